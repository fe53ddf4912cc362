"""Models saved by Hugging Face diffusers, opened as our own: every sampler of ours on them.

`load_diffusers(folder)` takes what diffusers' ``save_pretrained`` wrote on the local disk,
either a pipeline folder (``unet/`` and ``scheduler/``, as ``DDPMPipeline`` or
``DDIMPipeline`` save it) or a ``UNet2DModel`` folder with a ``scheduler_config.json``
beside its ``config.json``, and returns a `TrainedModel`: the U-Net behind our network
interface, under the process its scheduler describes:

- the DDPM-family schedulers (``DDPMScheduler``, ``DDIMScheduler``, the multistep and Euler
  ones that share their betas): a `DDPM` with the scheduler's exact betas and target;
- ``EDMEulerScheduler`` and ``EDMDPMSolverMultistepScheduler``: an `EDM` with the scheduler's
  sigma range and rho, the U-Net preconditioned with its ``sigma_data`` (`DiffusersEDM`);
- ``FlowMatchEulerDiscreteScheduler`` and ``FlowMatchHeunDiscreteScheduler``: a
  `FlowMatching` path whose time is the scheduler's sigma (`DiffusersFlow`). Its ``shift``
  settings change only the sampling grid diffusers walks, not the path, and are not carried
  over (our grids are used).

The DDPM mapping (the same conventions `tests/samplers/test_diffusers_equivalence.py` checks):

- diffusers' integer timestep k = 0..T-1 is our step k + 1, i.e. time t = (k + 1) / T; its
  ``alphas_cumprod[k]`` is our ``alpha_bar[k + 1]``, and its "timestep -1" (the final
  alpha of 1) is our t = 0. The network is called at timestep t T - 1.
- ``prediction_type``: ``epsilon`` is our eps, ``v_prediction`` our v, ``sample`` our x0.
- ``beta_schedule``: ``linear``, ``scaled_linear`` (linear in sqrt(beta)),
  ``squaredcos_cap_v2`` (the cosine schedule of Nichol & Dhariwal 2021, betas capped at
  0.999) or ``trained_betas``; ``rescale_betas_zero_snr`` (Lin et al. 2024) is applied.
- Pixels: the network sees images in [-1, 1]; samples come back in [0, 1], as diffusers'
  pipelines return them, or in the pixel range of the `dataset` they are compared with.

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

from diffusion.data import Dataset
from diffusion.data.normalize import Normalizer
from diffusion.errors import CheckpointError
from diffusion.models.diffusers_precond import DiffusersEDM, DiffusersFlow
from diffusion.models.diffusers_unet import DiffusersUNet, import_unet2d
from diffusion.processes import DDPM, EDM, FlowMatching
from diffusion.training.config import TrainConfig
from diffusion.training.trained import TrainedModel

#: schedulers whose config describes a discrete variance-preserving (DDPM) process
DDPM_SCHEDULERS = (
    "DDPMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler",
    "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "HeunDiscreteScheduler",
    "UniPCMultistepScheduler", "DEISMultistepScheduler", "LMSDiscreteScheduler",
    "DPMSolverSinglestepScheduler", "KDPM2DiscreteScheduler",
)  # fmt: skip
EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")
FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
PREDICTIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
#: EDM schedulers' targets: the sign of c_out (Karras et al. 2022, Table 1)
EDM_PREDICTIONS = {"epsilon": 1.0, "v_prediction": -1.0}
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


def _ddpm_family(scheduler: dict, unet, shape) -> tuple:
    """A DDPM-family scheduler: our DDPM with its exact betas and prediction target."""
    betas = diffusers_betas(scheduler)
    target = _target(scheduler, PREDICTIONS)
    process = DDPM.from_betas(betas, prediction=PREDICTIONS[target])
    steps = len(betas)
    settings = {"process": "ddpm", "diffusion_steps": steps, "prediction": PREDICTIONS[target],
                "sampler": "ddim", "sample_steps": min(50, steps)}  # fmt: skip
    return process, DiffusersUNet(unet, shape, steps), settings


def _edm_family(scheduler: dict, unet, shape) -> tuple:
    """An EDM scheduler: our EDM with its sigma range and rho, the U-Net preconditioned with
    its sigma_data (`DiffusersEDM`)."""
    target = _target(scheduler, EDM_PREDICTIONS)
    sigma_min = float(scheduler.get("sigma_min", 0.002))
    sigma_max = float(scheduler.get("sigma_max", 80.0))
    try:
        process = EDM(sigma_min, sigma_max, float(scheduler.get("rho", 7.0)), prediction="x0")
    except ValueError as exc:
        raise CheckpointError(f"scheduler sigma_min / sigma_max / rho: {exc}") from None
    network = DiffusersEDM(unet, process, shape, sigma_data=float(scheduler.get("sigma_data", 0.5)),
                           sign=EDM_PREDICTIONS[target])  # fmt: skip
    settings = {"process": "edm", "prediction": "x0", "sampler": "heun", "sample_steps": 18,
                "sigma_min": sigma_min, "sigma_max": sigma_max}  # fmt: skip
    return process, network, settings


def _flow_family(scheduler: dict, unet, shape) -> tuple:
    """A flow-matching scheduler: our FlowMatching path (t is diffusers' sigma), the U-Net
    called at timestep num_train_timesteps t (`DiffusersFlow`)."""
    if scheduler.get("invert_sigmas"):
        raise CheckpointError("scheduler invert_sigmas: a path that runs from data at t = 1 "
                              "cannot be mapped")  # fmt: skip
    process = FlowMatching(prediction="velocity", coupling="independent")
    steps = int(scheduler.get("num_train_timesteps", 1000))
    settings = {"process": "flow", "prediction": "velocity", "coupling": "independent",
                "sampler": "euler", "sample_steps": 28}  # fmt: skip
    return process, DiffusersFlow(unet, process, shape, steps=steps), settings


def _target(scheduler: dict, known: dict) -> str:
    target = scheduler.get("prediction_type", "epsilon")
    if target not in known:
        raise CheckpointError(f"scheduler prediction_type {target!r} is not one we can map "
                              f"for {scheduler.get('_class_name')} (known: {', '.join(known)})")  # fmt: skip
    return target


#: scheduler class -> the builder of (process, network, config settings) for it
FAMILIES = {
    **dict.fromkeys(DDPM_SCHEDULERS, _ddpm_family),
    **dict.fromkeys(EDM_SCHEDULERS, _edm_family),
    **dict.fromkeys(FLOW_SCHEDULERS, _flow_family),
}


def load_diffusers(
    folder: str | Path, *, allow_pickle: bool = False, dataset: Dataset | None = None
) -> TrainedModel:
    """A diffusers U-Net and scheduler saved in `folder`, as a `TrainedModel` (see the module
    docstring). CheckpointError, in one line, for anything that cannot be mapped.

    Args:
        folder: a pipeline folder (``unet/``, ``scheduler/``) or a UNet2DModel folder with a
            ``scheduler_config.json``, on the local disk.
        allow_pickle: accept pickled ``.bin`` weights (runs whatever code they hold).
        dataset: the images the model is compared with (evaluate, nll, compare): their shape
            must be the model's, and samples come back in their pixel range (which the model's
            [-1, 1] maps to) instead of [0, 1].
    """
    unet_dir, scheduler = find_parts(folder)
    name = scheduler.get("_class_name", "?")
    if name not in FAMILIES:
        raise CheckpointError(f"scheduler _class_name {name!r} is not one we can map (known: "
                              "the DDPM-family schedulers such as DDPMScheduler and "
                              "DDIMScheduler, EDMEulerScheduler, EDMDPMSolverMultistepScheduler, "
                              "FlowMatchEulerDiscreteScheduler)")  # fmt: skip
    unet_config = _read_json(unet_dir / "config.json")
    if unet_config.get("_class_name") != "UNet2DModel":
        raise CheckpointError(f"unet _class_name {unet_config.get('_class_name')!r}: only "
                              "UNet2DModel (pixel-space images) can be opened")  # fmt: skip
    if unet_config.get("num_class_embeds") or unet_config.get("class_embed_type"):
        raise CheckpointError("unet num_class_embeds / class_embed_type: class-conditional "
                              "diffusers models cannot be opened yet")  # fmt: skip
    if name in DDPM_SCHEDULERS:  # a config we cannot map fails before the weights are read
        diffusers_betas(scheduler)
    unet = _read_unet(unet_dir, allow_pickle)
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    shape = (int(unet.config.in_channels), int(size[0]), int(size[1]))
    process, network, settings = FAMILIES[name](scheduler, unet.eval(), shape)
    dim = math.prod(shape)
    if dataset is None:  # samples in [0, 1], as diffusers' pipelines return images
        spec, normalizer = f"diffusers:{Path(folder).name}", Normalizer.for_range(0.0, 1.0, dim)
    else:
        if tuple(dataset.shape) != shape:
            raise CheckpointError(f"--dataset {dataset.name} has examples of shape "
                                  f"{tuple(dataset.shape)}; the diffusers model makes {shape}")  # fmt: skip
        spec, normalizer = dataset.name, Normalizer.for_range(*dataset.value_range, dim)
    config = TrainConfig(dataset=spec, model="unet", sample_grid="uniform", labels="off",
                         **settings)  # fmt: skip
    return TrainedModel(config=config, process=process, model=network, normalizer=normalizer,
                        dim=dim, shape=shape)  # fmt: skip


def _read_unet(unet_dir: Path, allow_pickle: bool):
    """The UNet2DModel in `unet_dir`, from safetensors (or a trusted pickle)."""
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
    # low_cpu_mem_usage=False: the plain way, without the advice to install accelerate
    return unet_class.from_pretrained(unet_dir, use_safetensors=has_safetensors,
                                      local_files_only=True, low_cpu_mem_usage=False)  # fmt: skip
