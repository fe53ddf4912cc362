"""The exact model of a Gaussian mixture, behind the same interface as a trained run.

`exact_model` wraps `diffusion.measure.oracle.Oracle` as a `TrainedModel`, so sampling,
evaluation, likelihoods and diagnostics run on the true data law through the code a network
goes through; `reference` picks what a run is compared with in `diffusion diagnose`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from diffusion.data import Dataset
from diffusion.data.mixture import GaussianMixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.oracle import Oracle, OracleDenoiser
from diffusion.training.build import build_process
from diffusion.training.config import TrainConfig
from diffusion.training.trained import TrainedModel


@dataclass
class ExactModel(TrainedModel):
    """A `TrainedModel` whose network is the exact oracle: sample, evaluate and measure the
    likelihood of the true data law through the same code as a trained run."""

    oracle: Oracle | None = None

    def denoiser(self, device: torch.device | str = "cpu") -> OracleDenoiser:
        return self.oracle.denoiser()


def exact_model(
    mixture: GaussianMixture,
    config: TrainConfig,
    normalizer: Normalizer | None = None,
    dtype: torch.dtype = torch.float64,
    process=None,
) -> ExactModel:
    """The exact model of `mixture` under the process of `config`.

    The process sees standardised data, as in training: by `normalizer` when given (a run's,
    to compare with its network), else by the mixture's own mean and standard deviation.
    `process` reuses an existing process object (else one is built from `config`).
    """
    config.validate()  # fills the process's defaults (prediction, sampler, steps)
    if normalizer is None:
        normalizer = Normalizer(shift=mixture.mean().float(), scale=mixture.std().float())
    if process is None:
        # The exact field is the Gaussian path's, that of independent pairs: a coupling
        # changes what a network learns, not what the oracle knows.
        process = build_process(dataclasses.replace(config, coupling="independent"))
    oracle = Oracle(mixture.affine(normalizer.shift, normalizer.scale), process, dtype)
    return ExactModel(
        config=config, process=process, model=torch.nn.Identity(), normalizer=normalizer,
        dim=mixture.dim, oracle=oracle,
    )  # fmt: skip


def reference(trained, dataset: Dataset, training_points: torch.Tensor) -> tuple[ExactModel, str]:
    """The exact model to compare `trained` with, in the run's coordinates, and its name."""
    if dataset.mixture is None:
        return memoriser(trained, training_points), "exact (training set)"
    return _exact_in_run(trained, dataset.mixture), "exact (mixture)"


def memoriser(trained, training_points: torch.Tensor) -> ExactModel:
    """The empirical optimal denoiser of the training set, with the run's process and
    coordinates: a model that has memorised its data perfectly."""
    return _exact_in_run(trained, GaussianMixture.points(training_points))


def _exact_in_run(trained, mixture: GaussianMixture) -> ExactModel:
    return exact_model(mixture, trained.config, trained.normalizer, process=trained.process)
