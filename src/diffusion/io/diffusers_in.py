"""Models saved by Hugging Face diffusers, opened as our own: every sampler of ours on them.

`load_diffusers(folder)` takes what diffusers' ``save_pretrained`` wrote on the local disk,
either a pipeline folder (``unet/`` and ``scheduler/``, as ``DDPMPipeline`` or
``DDIMPipeline`` save it) or a ``UNet2DModel`` folder with a ``scheduler_config.json``
beside its ``config.json``, and returns a `TrainedModel`: the U-Net behind our network
interface, under a `DDPM` process with the scheduler's exact betas and prediction target.

The mapping (the same conventions `tests/samplers/test_diffusers_equivalence.py` checks):

- diffusers' integer timestep k = 0..T-1 is our step k + 1, i.e. time t = (k + 1) / T; its
  ``alphas_cumprod[k]`` is our ``alpha_bar[k + 1]``, and its "timestep -1" (the final
  alpha of 1) is our t = 0. The network is called at timestep t T - 1.
- ``prediction_type``: ``epsilon`` is our eps, ``v_prediction`` our v, ``sample`` our x0.
- ``beta_schedule``: ``linear``, ``scaled_linear`` (linear in sqrt(beta)),
  ``squaredcos_cap_v2`` (the cosine schedule of Nichol & Dhariwal 2021, betas capped at
  0.999) or ``trained_betas``; ``rescale_betas_zero_snr`` (Lin et al. 2024) is applied.
- Pixels: the network sees images in [-1, 1]; samples come back in [0, 1], as diffusers'
  pipelines return them.

Not carried over: ``clip_sample`` and ``thresholding`` (diffusers clips or thresholds its x0
estimate inside some schedulers; our samplers do not, so a pipeline that clips gives slightly
different images), and class conditioning. Nothing is downloaded, and weights are read from
safetensors only: a folder with only a pickled ``.bin`` is refused unless `allow_pickle`
(which runs whatever code the pickle holds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from diffusion.data.normalize import Normalizer
from diffusion.errors import CheckpointError
from diffusion.models.diffusers_unet import DiffusersUNet, import_unet2d
from diffusion.processes import DDPM
from diffusion.training.config import TrainConfig
from diffusion.training.trained import TrainedModel

#: schedulers whose config describes a discrete variance-preserving (DDPM) process
DDPM_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler", "LMSDiscreteScheduler",
    "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
)  # fmt: skip
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
WEIGHTS = "diffusion_pytorch_model.safetensors"
PICKLED = "diffusion_pytorch_model.bin"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path} cannot be read: {exc}") from None


def find_parts(folder: str | Path) -> tuple[Path, dict]:
    """(the U-Net's folder, the scheduler's config) of a diffusers folder on the disk."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"--diffusers {folder}: no such folder (nothing is downloaded)")
    if (folder / "unet" / "config.json").is_file():
        unet, scheduler = folder / "unet", folder / "scheduler" / "scheduler_config.json"
    elif (folder / "config.json").is_file():
        unet, scheduler = folder, folder / "scheduler_config.json"
    else:
        raise CheckpointError(f"{folder} holds neither a diffusers pipeline (unet/config.json) "
                              "nor a UNet2DModel (config.json)")  # fmt: skip
    if not scheduler.is_file():
        raise CheckpointError(f"{folder}: no scheduler config ({scheduler.name}) to say which "
                              "process the model was trained with")  # fmt: skip
    return unet, _read_json(scheduler)


def diffusers_betas(config: dict) -> torch.Tensor:
    """The betas (T,) in float64 that a diffusers scheduler config describes."""
    name = config.get("_class_name", "?")
    if name not in DDPM_SCHEDULERS:
        raise CheckpointError(f"scheduler _class_name {name!r} is not one we can map (known: "
                              "the DDPM-family schedulers, e.g. DDPMScheduler, DDIMScheduler)")  # fmt: skip
    T = int(config.get("num_train_timesteps", 1000))
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
    else:
        schedule = config.get("beta_schedule", "linear")
        start = float(config.get("beta_start", 0.0001))
        end = float(config.get("beta_end", 0.02))
        if schedule == "linear":
            betas = torch.linspace(start, end, T, dtype=torch.float64)
        elif schedule == "scaled_linear":  # linear in sqrt(beta), as latent diffusion models use
            betas = torch.linspace(start**0.5, end**0.5, T, dtype=torch.float64) ** 2
        elif schedule == "squaredcos_cap_v2":  # Nichol & Dhariwal 2021, Eq. 17, capped at 0.999
            ts = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((ts + 0.008) / 1.008 * math.pi / 2) ** 2
            betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
        else:
            raise CheckpointError(f"scheduler beta_schedule {schedule!r} is not one we can map "
                                  f"(known: {', '.join(BETA_SCHEDULES)})")  # fmt: skip
    if betas.shape != (T,):
        raise CheckpointError(f"scheduler trained_betas has {betas.numel()} values for "
                              f"num_train_timesteps = {T}")  # fmt: skip
    if config.get("rescale_betas_zero_snr"):  # Lin et al. 2024, Algorithm 1
        root = torch.cumprod(1 - betas, 0).sqrt()
        first, last = root[0].clone(), root[-1].clone()
        root = (root - last) * first / (first - last)
        alpha_bar = root**2
        alphas = torch.cat([alpha_bar[:1], alpha_bar[1:] / alpha_bar[:-1]])
        betas = 1 - alphas
    return betas


def load_diffusers(folder: str | Path, *, allow_pickle: bool = False) -> TrainedModel:
    """A diffusers U-Net and scheduler saved in `folder`, as a `TrainedModel` (see the module
    docstring). CheckpointError, in one line, for anything that cannot be mapped."""
    unet_dir, scheduler = find_parts(folder)
    betas = diffusers_betas(scheduler)
    target = scheduler.get("prediction_type", "epsilon")
    if target not in PREDICTIONS:
        raise CheckpointError(f"scheduler prediction_type {target!r} is not one we can map "
                              f"(known: {', '.join(PREDICTIONS)})")  # fmt: skip
    unet_config = _read_json(unet_dir / "config.json")
    if unet_config.get("_class_name") != "UNet2DModel":
        raise CheckpointError(f"unet _class_name {unet_config.get('_class_name')!r}: only "
                              "UNet2DModel (pixel-space images) can be opened")  # fmt: skip
    if unet_config.get("num_class_embeds") or unet_config.get("class_embed_type"):
        raise CheckpointError("unet num_class_embeds / class_embed_type: class-conditional "
                              "diffusers models cannot be opened yet")  # fmt: skip
    has_safetensors = (unet_dir / WEIGHTS).is_file()
    if not has_safetensors:
        if not (unet_dir / PICKLED).is_file():
            raise CheckpointError(f"{unet_dir} has no weights ({WEIGHTS})")
        if not allow_pickle:
            raise CheckpointError(f"{unet_dir} has only pickled weights ({PICKLED}); loading a "
                                  "pickle runs any code it holds: convert it to safetensors, or "
                                  "pass --allow-pickle if you trust its source")  # fmt: skip
    try:
        unet_class = import_unet2d()
    except ImportError as exc:
        raise CheckpointError(f"opening a diffusers model: {exc}") from None
    unet = unet_class.from_pretrained(unet_dir, use_safetensors=has_safetensors,
                                       local_files_only=True)  # fmt: skip
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (int(unet.config.in_channels), int(size[0]), int(size[1]))
    process = DDPM.from_betas(betas, prediction=PREDICTIONS[target])
    steps = len(betas)
    config = TrainConfig(dataset=f"diffusers:{Path(folder).name}", process="ddpm",
                         diffusion_steps=steps, prediction=PREDICTIONS[target], model="unet",
                         sampler="ddim", sample_steps=min(50, steps), sample_grid="uniform",
                         labels="off")  # fmt: skip
    dim = math.prod(shape)
    # samples in [0, 1]: x_data = (x + 1) / 2, as diffusers' pipelines return images
    normalizer = Normalizer(shift=torch.full((dim,), 0.5), scale=torch.full((dim,), 0.5))
    network = DiffusersUNet(unet.eval(), shape, steps)
    return TrainedModel(config=config, process=process, model=network, normalizer=normalizer,
                        dim=dim, shape=shape)  # fmt: skip
