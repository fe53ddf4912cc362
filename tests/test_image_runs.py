"""Image runs end to end: the digits and a user's images train with the U-Net, write their
pictures and metrics, sample image arrays, and resume bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_helpers import run_cli
from PIL import Image
from test_resume import assert_same

from diffusion.cli import main
from diffusion.io.checkpoints import load_checkpoint, save_checkpoint
from diffusion.io.runs import load_model
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer

# A tiny U-Net and a few steps: seconds on 2 CPU cores, with every output written.
TINY_IMAGES = [
    "--unet-channels", "8", "--train-steps", "30", "--batch-size", "32", "--sample-steps", "4",
    "--eval-samples", "200", "--snapshot-samples", "16", "--snapshot-every", "15",
    "--checkpoint-every", "10", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("images") / "digits"
    assert main(["train", "--dataset", "digits", *TINY_IMAGES, "--out", str(run_dir)]) == 0
    return run_dir


def test_a_digits_run_writes_image_pictures_and_image_metrics(digits_run):
    meta = json.loads((digits_run / "config.json").read_text())
    assert meta["shape"] == [1, 8, 8] and meta["dim"] == 64
    assert meta["config"]["model"] == "unet" and meta["config"]["train_steps"] == 30
    metrics = json.loads((digits_run / "metrics.json").read_text())
    for name in ("frechet", "memorisation", "sliced_wasserstein"):
        assert metrics[name]["floor"] > 0 and metrics[name]["ratio"] > 0
    assert metrics["frechet"]["n"] == 200  # the samples against 200 real images per half
    with Image.open(digits_run / "training.gif") as gif:
        assert gif.n_frames == 3  # snapshots at steps 0, 15 and 30
    with Image.open(digits_run / "reverse.gif") as gif:
        assert gif.n_frames == 5  # the prior and the 4 sampling steps
    with Image.open(digits_run / "samples.png") as png:
        assert png.width > png.height  # two grids side by side


def test_the_model_of_an_image_run_loads_as_an_image_model(digits_run):
    trained = load_model(digits_run)
    assert trained.shape == (1, 8, 8) and trained.is_image and trained.value_range == (0, 16)
    x = trained.sample(50, generator=torch.Generator().manual_seed(0)).x
    assert x.shape == (50, 64) and x.min() >= 0 and x.max() <= 16  # clipped to the range


def test_sample_writes_images_in_the_datas_units_and_a_grid(digits_run, tmp_path, capsys):
    out = tmp_path / "digits.npy"
    code, stdout, _ = run_cli(capsys, "sample", "--run", str(digits_run), "--n", "20",
                              "--out", str(out))  # fmt: skip
    assert code == 0 and "images of 1 x 8 x 8" in stdout
    images = np.load(out)
    assert images.shape == (20, 1, 8, 8) and images.min() >= 0 and images.max() <= 16
    with Image.open(out.with_suffix(".png")) as png:
        assert png.mode == "RGB" and png.width > 8 * 5


def test_evaluate_of_an_image_run_prints_the_image_metrics(digits_run, capsys):
    code, stdout, _ = run_cli(capsys, "evaluate", "--run", str(digits_run), "--n", "100")
    assert code == 0 and "frechet" in stdout and "memorisation" in stdout


def test_nll_of_an_image_run_dequantises_the_digits(digits_run, capsys):
    code, stdout, _ = run_cli(capsys, "nll", "--run", str(digits_run), "--n", "8",
                              "--divergence", "hutchinson", "--json")  # fmt: skip
    report = json.loads(stdout)
    assert code == 0 and report["dequantised"] is True and report["dim"] == 64
    # A density over 64 grey levels in [0, 16] (bins of width 1): between 0 and log2(17)
    # bits per pixel for any model better than the uniform one; the untrained one can be worse
    # but stays finite.
    assert np.isfinite(report["bits_per_dim"]) and report["bits_per_dim"] > 0


def test_compare_puts_a_diffusers_model_beside_a_run_on_its_images(digits_run, tmp_path, capsys):
    diffusers = pytest.importorskip("diffusers")
    folder = tmp_path / "edm"
    torch.manual_seed(0)
    diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    ).save_pretrained(folder / "unet")  # fmt: skip
    diffusers.EDMEulerScheduler().save_pretrained(folder / "scheduler")
    out = tmp_path / "cmp"
    argv = ["compare", "--run", str(digits_run), "--diffusers", str(folder), "--dataset",
            "digits", "--n", "100", "--out", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [row["run"] for row in rows] == [str(digits_run), str(folder)]
    assert rows[1]["process"] == "edm"
    assert all(row["frechet_ratio"] > 0 for row in rows)
    assert (out / "compare.png").is_file() and not (out / "compare.gif").exists()
    assert "Fréchet ratio" in capsys.readouterr().out


def test_a_folder_of_pngs_and_an_npy_array_train_with_default_settings(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"  # no class folders: the metrics use random features
    folder.mkdir()
    for i in range(24):
        pixels = rng.integers(0, 255, size=(8, 8), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    array = tmp_path / "faces.npy"
    np.save(array, rng.integers(0, 255, size=(30, 8, 8, 3), dtype=np.uint8))
    for source, shape in ((folder, [1, 8, 8]), (array, [3, 8, 8])):
        run_dir = tmp_path / f"run-{source.stem}"
        # Default settings but the length of training and the sizes of the outputs.
        code, _, err = run_cli(capsys, "train", "--dataset", str(source), "--train-steps", "4",
                               "--eval-samples", "20", "--snapshot-samples", "4",
                               "--sample-steps", "2", "--quiet", "--out", str(run_dir))  # fmt: skip
        assert code == 0, err
        meta = json.loads((run_dir / "config.json").read_text())
        assert meta["shape"] == shape and meta["config"]["model"] == "unet"
        assert (run_dir / "samples.png").is_file()


IMAGE_SMALL = dict(
    dataset="digits", unet_channels=8, train_steps=24, batch_size=16, sample_steps=3,
    snapshot_every=10, snapshot_samples=4, warmup=5,
)  # fmt: skip


@pytest.mark.parametrize("step", [0, 11, 24])
def test_a_unet_run_resumes_bit_identically(step, tmp_path):
    reference = Trainer(TrainConfig(**IMAGE_SMALL))
    reference.run(progress=False)
    stopped = Trainer(TrainConfig(**IMAGE_SMALL))
    stopped.run(progress=False, until=step)
    state = load_checkpoint(save_checkpoint(tmp_path, stopped.state()))
    resumed = Trainer(TrainConfig(**IMAGE_SMALL))
    resumed.load_state(state)
    resumed.run(progress=False)
    assert_same(resumed.state(), reference.state())


def test_the_python_api_trains_on_an_in_memory_image_array():
    import diffusion

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(40, 8, 8, 3), dtype=np.uint8)
    run = diffusion.train(images, unet_channels=8, train_steps=3, batch_size=8,
                          snapshot_samples=4, eval_samples=16, sample_steps=2, progress=False)  # fmt: skip
    x = run.sample(5)
    assert run.model.shape == (3, 8, 8) and x.shape == (5, 3, 8, 8)
    assert x.min() >= 0 and x.max() <= 255


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--dataset", "swissroll", "--model", "unet"], "needs images"),
     (["--dataset", "digits", "--unet-mults", "1,2,2,2,2"], "divisible by 16"),
     (["--dataset", "swissroll", "--unet-channels", "8"], "applies to model unet and diffusers-unet only"),
     (["--dataset", "digits", "--width", "64"], "applies to model mlp only"),
     (["--dataset", "digits", "--unet-mults", "1,x"], "comma-separated integers")],
)  # fmt: skip
def test_a_network_that_cannot_take_the_data_is_refused_before_anything_is_written(
    args, message, tmp_path, capsys
):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", *args, "--out", str(out))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
