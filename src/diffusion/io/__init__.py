"""Files: checksummed tensor files, saved runs and training checkpoints. Never pickle.

`tensorfile` (safetensors with JSON metadata and a checksum, written atomically), `runs` (a
run directory's config and finished model) and `checkpoints` (the training state on disk).
"""
