"""Runs trained with diffusers' UNet2DModel (--model diffusers-unet), exported with
`diffusion export --to diffusers` and sampled by diffusers' own DDPMPipeline in a process
that cannot import this package: its images equal ours from the same noise."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")

from diffusion.cli import main
from diffusion.io.runs import load_model

TINY = ["--dataset", "digits", "--model", "diffusers-unet", "--process", "ddpm",
        "--labels", "off", "--train-steps", "20", "--unet-channels", "8", "--batch-size", "32",
        "--eval-samples", "100", "--snapshot-samples", "4", "--sample-steps", "10",
        "--diffusion-steps", "100", "--quiet"]  # fmt: skip
#: diffusers only, in a fresh interpreter where `import diffusion` fails
PLAIN_DIFFUSERS = """
import sys
sys.modules["diffusion"] = None  # this package cannot be imported here
try:
    import diffusion
except ImportError:
    pass
else:
    raise SystemExit("diffusion was importable")
import numpy as np, torch
from diffusers import DDPMPipeline
pipe = DDPMPipeline.from_pretrained(sys.argv[1])
pipe.set_progress_bar_config(disable=True)
images = pipe(batch_size=4, generator=torch.Generator().manual_seed(5), num_inference_steps=10,
              output_type="np").images
np.save(sys.argv[2], images)
"""


@pytest.fixture(scope="module", params=["v", pytest.param("eps", marks=pytest.mark.slow)])
def exported(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"export-{request.param}")
    run_dir = root / "run"
    assert main(["train", *TINY, "--prediction", request.param, "--out", str(run_dir)]) == 0
    assert main(["export", "--run", str(run_dir), "--to", "diffusers", str(root / "pipe")]) == 0
    return run_dir, root / "pipe"


def test_diffusers_alone_samples_the_exported_run_as_we_do(exported, tmp_path):
    run_dir, pipe = exported
    done = subprocess.run([sys.executable, "-c", PLAIN_DIFFUSERS, str(pipe), str(tmp_path / "t.npy")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.load(tmp_path / "t.npy")  # (4, 8, 8, 1) in [0, 1]
    trained = load_model(run_dir)
    x = trained.sample(4, sampler="ancestral", steps=10, grid="uniform",
                       generator=torch.Generator().manual_seed(5)).x  # fmt: skip
    pixels = trained.normalizer.normalize(x)  # back to the network's [-1, 1]
    ours = ((pixels + 1) / 2).clamp(0, 1).reshape(4, 1, 8, 8).permute(0, 2, 3, 1).numpy()
    # v: 1e-5. eps: x0 = (x - sigma eps) / alpha divides diffusers' float32 alphas_cumprod
    # (ours are float64) by alpha ~ 0.01 at the first step of this 100-step schedule, so the
    # images agree to 1.1e-4 (measured); the update rules are the same (samplers/
    # test_diffusers_equivalence.py swaps the tables and finds 1e-12).
    tolerance = 1e-5 if load_model(run_dir).process.prediction == "v" else 2e-4
    assert np.abs(ours - theirs).max() < tolerance


def test_an_exported_run_opens_again_with_diffusers_in(exported):
    from diffusion.io.diffusers_in import load_diffusers

    run_dir, pipe = exported
    ours, again = load_model(run_dir), load_diffusers(pipe)
    assert torch.equal(ours.process.alpha_bar, again.process.alpha_bar)
    assert ours.process.prediction == again.process.prediction
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(0))
    t = torch.full((3,), 0.37)
    with torch.no_grad():
        assert torch.equal(ours.model(x, t), again.model(x, t))


def test_runs_diffusers_cannot_represent_are_refused(tiny_run, tmp_path, capsys):
    out = tmp_path / "pipe"
    assert main(["export", "--run", str(tiny_run[0]), "--to", "diffusers", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "network is 'mlp', which diffusers cannot" in err
    assert not out.exists()
    conditional = tmp_path / "conditional"  # diffusers' U-Net takes classes; DDPMPipeline not
    assert main(["train", *TINY, "--labels", "on", "--out", str(conditional)]) == 0
    assert load_model(conditional).classes == 10
    assert main(["export", "--run", str(conditional), "--to", "diffusers", str(out)]) == 2
    assert "class-conditional" in capsys.readouterr().err and not out.exists()


def test_export_refuses_an_existing_folder_and_other_processes(exported, tmp_path, capsys):
    run_dir, pipe = exported
    assert main(["export", "--run", str(run_dir), "--to", "diffusers", str(pipe)]) == 2
    assert "exists already" in capsys.readouterr().err
    argv = ["train", *TINY, "--process", "edm", "--out", str(tmp_path / "edm")]
    assert main(argv) == 2
    assert "diffusers-unet trains with process ddpm only" in capsys.readouterr().err
    assert not (tmp_path / "edm").exists()
