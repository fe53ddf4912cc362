"""The exact model of a Gaussian mixture, behind the same interface as a trained run.

`exact_model` wraps `diffusion.measure.oracle.Oracle` as a `TrainedModel`, so sampling,
evaluation, likelihoods and diagnostics run on the true data law through the code a network
goes through; `reference` picks what a run is compared with in `diffusion diagnose`.

The exact field is always that of the Gaussian path, where noise is drawn independently of
the data: a coupling (minibatch optimal transport, `diffusion.processes.coupling`) changes
what a network learns, not what the oracle knows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from diffusion.data import Dataset
from diffusion.data.mixture import GaussianMixture
from diffusion.data.normalize import Normalizer
from diffusion.measure.oracle import GuidedOracleDenoiser, Oracle, OracleDenoiser
from diffusion.training.build import build_process
from diffusion.training.config import TrainConfig
from diffusion.training.trained import TrainedModel


@dataclass
class ExactModel(TrainedModel):
    """A `TrainedModel` whose network is the exact oracle: sample, evaluate and measure the
    likelihood of the true data law through the same code as a trained run."""

    oracle: Oracle | None = None

    @property
    def classes(self) -> int:
        """The mixture's classes: its components, or the groups its file names."""
        return self.oracle.mixture.n_classes

    def denoiser(
        self,
        device: torch.device | str = "cpu",
        *,
        label: torch.Tensor | None = None,
        guidance: float = 1.0,
        interval: tuple[float, float] | None = None,
    ) -> OracleDenoiser | GuidedOracleDenoiser:
        """The exact denoiser; for classes `label` (B,), the exact guided one."""
        if label is None:
            return self.oracle.denoiser()
        return GuidedOracleDenoiser(self.oracle, label, guidance, interval)


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
    `process` reuses an existing process object when it draws independent noise; else (None,
    or a coupled process) one of independent noise is built from `config`.
    """
    config.validate()  # fills the process's defaults (prediction, sampler, steps)
    if normalizer is None:
        normalizer = Normalizer(shift=mixture.mean().float(), scale=mixture.std().float())
    if process is None or process.coupling != "independent":
        process = build_process(dataclasses.replace(config, coupling="independent"))
    oracle = Oracle(mixture.affine(normalizer.shift, normalizer.scale), process, dtype)
    return ExactModel(
        config=config, process=process, model=torch.nn.Identity(), normalizer=normalizer,
        dim=mixture.dim, oracle=oracle,
    )  # fmt: skip


def reference(trained, dataset: Dataset, training_points: torch.Tensor) -> tuple[ExactModel, str]:
    """The exact model to compare `trained` with, in the run's coordinates, and its short name
    (for figure legends): the oracle of the run's mixture, else of its training set, always on
    the Gaussian path of independent noise (see `describe_reference`)."""
    if dataset.mixture is None:
        return memoriser(trained, training_points), "exact (training set)"
    return _exact_in_run(trained, dataset.mixture), "exact (mixture)"


def describe_reference(trained, name: str) -> str:
    """The reference's name, and for a run trained with a coupling what comparing with it
    includes: one line, printed by `diffusion diagnose` and written to diagnostics.json."""
    if trained.process.coupling == "independent":
        return name
    return (
        f"{name}, Gaussian path of independent noise: a network trained with coupling "
        f"{trained.process.coupling!r} learns a straighter field, so its error by time "
        "includes that difference"
    )


def memoriser(trained, training_points: torch.Tensor) -> ExactModel:
    """The empirical optimal denoiser of the training set, with the run's process (of
    independent noise) and coordinates: a model that has memorised its data perfectly."""
    return _exact_in_run(trained, GaussianMixture.points(training_points))


def _exact_in_run(trained, mixture: GaussianMixture) -> ExactModel:
    # the run's process is reused unless it is coupled (exact_model then builds its own)
    return exact_model(mixture, trained.config, trained.normalizer, process=trained.process)
