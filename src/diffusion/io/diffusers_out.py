"""A run, written as a diffusers pipeline: ``DDPMPipeline.from_pretrained(OUT)`` samples it in
plain diffusers, without this package.

Only a run whose network is diffusers' own ``UNet2DModel`` (``--model diffusers-unet``, with
the DDPM process) can be exported: diffusers has no counterpart of this toolkit's U-Net and
MLP, nor of its other processes. The folder holds the EMA weights (``unet/``, safetensors)
and a ``DDPMScheduler`` (``scheduler/``) with the run's exact betas (``trained_betas``), its
prediction target, the posterior variance of our ancestral sampler (``fixed_small``), no
clipping and trailing timesteps, so that the pipeline's steps are our ancestral sampler's
on our uniform grid. Like every diffusers pipeline it returns images in [0, 1]: (x + 1) / 2
of the network's [-1, 1] pixels (the run's own samples are in the data's units).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from diffusion.errors import CheckpointError
from diffusion.io.runs import load_model

#: our prediction targets, as diffusers names them
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def export_diffusers(run_dir: str | Path, out: str | Path) -> Path:
    """Write the run in `run_dir` as a DDPMPipeline folder `out` (which must not exist yet;
    written under a temporary name and renamed, so a killed export leaves nothing half
    written). CheckpointError, in one line, for a run diffusers cannot represent."""
    out = Path(out)
    if out.exists():
        raise CheckpointError(f"{out} exists already: choose a new folder for the pipeline")
    if not out.parent.is_dir():
        raise CheckpointError(f"the folder {out.parent} does not exist")
    trained = load_model(run_dir)
    config = trained.config
    if config.model != "diffusers-unet":
        raise CheckpointError(f"the run's network is {config.model!r}, which diffusers cannot "
                              "load: train with --model diffusers-unet --process ddpm to export")  # fmt: skip
    if config.process != "ddpm":  # refused at training time too; an edited config.json
        raise CheckpointError(f"process {config.process!r} has no diffusers pipeline here")
    if config.classes:
        raise CheckpointError("the run is class-conditional, and DDPMPipeline samples without "
                              "classes: train with --labels off to export")  # fmt: skip
    from diffusers import DDPMPipeline, DDPMScheduler

    process = trained.process
    scheduler = DDPMScheduler(
        num_train_timesteps=process.steps, trained_betas=process.betas.tolist(),
        prediction_type=PREDICTION_TYPES[process.prediction], variance_type="fixed_small",
        clip_sample=False, timestep_spacing="trailing",
    )  # fmt: skip
    pipeline = DDPMPipeline(unet=trained.model.unet, scheduler=scheduler)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pipeline.save_pretrained(tmp, safe_serialization=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
