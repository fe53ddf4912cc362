"""`diffusion export --run R --to diffusers OUT`: a run as a diffusers pipeline."""

from __future__ import annotations

import argparse


def cmd_export(args: argparse.Namespace) -> int:
    from diffusion.io.diffusers_out import export_diffusers

    out = export_diffusers(args.run, args.out)
    print(f"wrote a diffusers DDPMPipeline to {out}: DDPMPipeline.from_pretrained({str(out)!r})")
    return 0
