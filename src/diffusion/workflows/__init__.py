"""Orchestration: a training run end to end, comparisons, diagnoses and the Python API.

These modules put training, sampling, measuring, pictures and files together; the numerics
below them know nothing of runs or directories.
"""
