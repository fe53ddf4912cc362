"""Measurements: sample metrics with floors, exact oracles, likelihoods, diagnostics and the
Fokker–Planck solver. Numerics only: nothing here imports training, files or the CLI."""
