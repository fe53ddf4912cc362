"""Training: the typed configuration, the loop, data order, the training state and resuming.

`config` (TrainConfig: every setting, checked), `build` (the process, network and training
points a config names), `loop` (Trainer: AdamW, EMA, the non-finite guard), `batches`
(reproducible epoch order), `state` (TrainingState: everything a resume needs) and `trained`
(TrainedModel: a network ready to sample).
"""
