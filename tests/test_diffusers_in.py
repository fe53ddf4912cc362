"""A model saved by diffusers, opened with `load_diffusers` and sampled by our samplers: our
DDIM (eta = 0) over the pipeline's own timesteps, from the same noise, gives diffusers'
DDIMPipeline output; our Euler on a U-Net saved with an EDM or a flow-matching scheduler gives
that scheduler's own Euler loop; DPM-Solver++ and Heun run on it; configs we cannot map are
refused by field. Everything is made here (a tiny random UNet2DModel): nothing is
downloaded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffusion.cli import main  # noqa: E402
from diffusion.errors import CheckpointError  # noqa: E402
from diffusion.io.diffusers_in import diffusers_betas, load_diffusers  # noqa: E402
from diffusion.samplers import ddim, euler  # noqa: E402

T = 1000


def tiny_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
        block_out_channels=(8, 16), norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
    )  # fmt: skip


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("diffusers") / "ddim"
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=T, beta_schedule="linear",
                                        clip_sample=False, prediction_type="epsilon")  # fmt: skip
    diffusers.DDIMPipeline(unet=tiny_unet(), scheduler=scheduler).save_pretrained(folder)
    return folder


def test_our_ddim_reproduces_the_ddim_pipeline(pipeline_dir):
    pipe = diffusers.DDIMPipeline.from_pretrained(pipeline_dir)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(batch_size=4, generator=torch.Generator().manual_seed(3), eta=0.0,
                  num_inference_steps=10, output_type="np").images  # (4, 8, 8, 1) in [0, 1]  # fmt: skip
    trained = load_diffusers(pipeline_dir)
    # the pipeline's timesteps k are our times (k + 1) / T; after the last one, t = 0
    pipe.scheduler.set_timesteps(10)
    times = torch.cat([(pipe.scheduler.timesteps.double() + 1) / T, torch.zeros(1)])
    noise = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        x = ddim(trained.process.denoiser(trained.model), noise.reshape(4, -1), times)
    ours = trained.to_data(x).clamp(0, 1).reshape(4, 1, 8, 8).permute(0, 2, 3, 1).numpy()
    assert np.abs(ours - theirs).max() < 1e-5


@pytest.mark.parametrize(("sampler", "steps"), [("dpm-solver++", 10), ("heun", 8)])
def test_our_samplers_run_on_it(pipeline_dir, sampler, steps):
    trained = load_diffusers(pipeline_dir)
    result = trained.sample(
        3, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert result.x.shape == (3, 64) and torch.isfinite(result.x).all()
    assert result.nfe == (steps if sampler == "dpm-solver++" else 2 * steps - 1)
    assert float(result.x.min()) >= 0 and float(result.x.max()) <= 1


@pytest.mark.parametrize(
    ("schedule", "extra"),
    [("linear", {}), ("scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
     ("squaredcos_cap_v2", {}), ("linear", {"rescale_betas_zero_snr": True})],
)  # fmt: skip
def test_betas_match_diffusers_own(schedule, extra):
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=T, beta_schedule=schedule, **extra)
    config = {**dict(scheduler.config), "_class_name": "DDPMScheduler"}
    ours = diffusers_betas(config)
    assert torch.allclose(ours.float(), scheduler.betas, atol=1e-6, rtol=1e-5)


def test_sample_command_opens_a_diffusers_folder(pipeline_dir, tmp_path, capsys):
    out = tmp_path / "x.npy"
    argv = ["sample", "--diffusers", str(pipeline_dir), "--n", "5", "--sample-steps", "4",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    x = np.load(out)
    assert x.shape == (5, 1, 8, 8) and x.min() >= 0 and x.max() <= 1
    assert "wrote 5 images of 1 x 8 x 8" in capsys.readouterr().out


def edited(folder, tmp_path, part: str, **changes):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    path = copy / part
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    ("part", "changes", "message"),
    [
        ("scheduler/scheduler_config.json", {"prediction_type": "flow"}, "prediction_type 'flow'"),
        ("scheduler/scheduler_config.json", {"beta_schedule": "exp"}, "beta_schedule 'exp'"),
        ("scheduler/scheduler_config.json", {"_class_name": "ScoreSdeVeScheduler"},
         "_class_name 'ScoreSdeVeScheduler'"),
        ("unet/config.json", {"_class_name": "UNet2DConditionModel"}, "only UNet2DModel"),
    ],
)  # fmt: skip
def test_configs_we_cannot_map_are_refused_by_field(pipeline_dir, tmp_path, capsys, part,
                                                     changes, message):  # fmt: skip
    folder = edited(pipeline_dir, tmp_path, part, **changes)
    with pytest.raises(CheckpointError, match=message):
        load_diffusers(folder)
    out = tmp_path / "x.npy"
    assert main(["sample", "--diffusers", str(folder), "--n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and not out.exists()


def test_pickled_weights_are_refused_unless_allowed(pipeline_dir, tmp_path, capsys):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(pipeline_dir, folder)
    unet = diffusers.UNet2DModel.from_pretrained(folder / "unet")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    unet.save_pretrained(folder / "unet", safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(CheckpointError, match="only pickled weights"):
        load_diffusers(folder)
    assert load_diffusers(folder, allow_pickle=True).shape == (1, 8, 8)
    assert main(["sample", "--diffusers", str(tmp_path / "none"), "--n", "2",
                 "--out", str(tmp_path / "x.npy")]) == 2  # fmt: skip
    assert "no such folder" in capsys.readouterr().err


def saved_with(scheduler, folder) -> None:
    """The tiny U-Net and `scheduler` saved as a pipeline folder would hold them."""
    tiny_unet().save_pretrained(folder / "unet")
    scheduler.save_pretrained(folder / "scheduler")


def their_euler_loop(scheduler, unet, x: torch.Tensor, steps: int) -> torch.Tensor:
    """What an EDM or flow-matching pipeline does: the scheduler's own steps and inputs."""
    scheduler.set_timesteps(steps)
    with torch.no_grad():
        for timestep in scheduler.timesteps:
            scaled = getattr(scheduler, "scale_model_input", lambda x, _: x)(x, timestep)
            out = unet(scaled, timestep).sample  # flow schedulers do not scale the input
            x = scheduler.step(out, timestep, x).prev_sample
    return x


# Mutations: our EDM's own sigma_data = 1 in place of the scheduler's 0.5 puts the v-prediction
# case 1.2 off (scale 1.2); the flow U-Net called at timestep 1000 t - 1 (the DDPM convention)
# puts both shifts 6e-3 and 4e-3 off. Measured agreement: 4e-7 (EDM), 4e-7 (flow).
@pytest.mark.parametrize(
    ("make", "grid"),
    [
        (lambda: diffusers.EDMEulerScheduler(prediction_type="epsilon"), "sigmas"),
        (
            lambda: diffusers.EDMEulerScheduler(
                prediction_type="v_prediction", sigma_max=40.0, sigma_data=0.7, rho=5.0
            ),
            "sigmas",
        ),
        (lambda: diffusers.FlowMatchEulerDiscreteScheduler(), "times"),
        (lambda: diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0), "times"),
    ],
    ids=["edm-eps", "edm-v", "flow", "flow-shift3"],
)
def test_our_euler_reproduces_edm_and_flow_schedulers(tmp_path, make, grid):
    scheduler = make()
    saved_with(scheduler, tmp_path)
    trained = load_diffusers(tmp_path)
    noise = torch.randn((3, 1, 8, 8), generator=torch.Generator().manual_seed(1))
    x1 = noise * getattr(scheduler, "init_noise_sigma", 1.0)  # flow: no scaling
    theirs = their_euler_loop(scheduler, tiny_unet(), x1.clone(), 10)
    levels = scheduler.sigmas.double()  # ends with 0
    if grid == "sigmas":  # EDM: alpha = 1, t = (sigma / sigma_max)^(1 / rho)
        times = trained.process.time_of_sigma(levels)
        times[0] = 1.0  # sigma_max itself (float32 in the scheduler)
    else:  # flow: our t is the scheduler's sigma
        times = levels
    with torch.no_grad():
        ours = euler(trained.process.denoiser(trained.model), x1.reshape(3, -1), times)
    assert float((ours.reshape(theirs.shape) - theirs).abs().max()) < 1e-5 * max(
        1.0, float(theirs.abs().max())
    )


def test_edm_and_flow_models_sample_with_the_process_defaults(tmp_path):
    for name, scheduler in [("edm", diffusers.EDMDPMSolverMultistepScheduler()),
                            ("flow", diffusers.FlowMatchEulerDiscreteScheduler())]:  # fmt: skip
        saved_with(scheduler, tmp_path / name)
        trained = load_diffusers(tmp_path / name)
        assert trained.config.process == name
        result = trained.sample(2, steps=3, generator=torch.Generator().manual_seed(0))
        assert result.x.shape == (2, 64) and torch.isfinite(result.x).all()


def test_an_edm_target_we_cannot_map_is_refused(tmp_path):
    saved_with(diffusers.EDMEulerScheduler(), tmp_path)
    config = tmp_path / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "sample"}))
    with pytest.raises(CheckpointError, match=r"prediction_type 'sample'.*EDMEulerScheduler"):
        load_diffusers(tmp_path)


def test_with_a_dataset_samples_come_back_in_its_pixel_range(pipeline_dir, tmp_path):
    """The digits run over 0..16: the same draw, mapped from [-1, 1] to [0, 16] in place of
    [0, 1], is exactly 16 times the plain one."""
    plain, digits = tmp_path / "plain.npy", tmp_path / "digits.npy"
    common = ["--diffusers", str(pipeline_dir), "--n", "4", "--sample-steps", "3", "--seed", "5"]
    assert main(["sample", *common, "--out", str(plain)]) == 0
    assert main(["sample", *common, "--dataset", "digits", "--out", str(digits)]) == 0
    np.testing.assert_allclose(np.load(digits), 16 * np.load(plain), rtol=1e-6, atol=1e-6)


def test_evaluate_and_nll_measure_a_diffusers_model_against_a_dataset(pipeline_dir, capsys):
    common = ["--diffusers", str(pipeline_dir), "--dataset", "digits", "--json"]
    assert main(["evaluate", *common, "--n", "100", "--sample-steps", "3"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["frechet"]["ratio"] > 1 and metrics["sliced_wasserstein"]["ratio"] > 1
    assert main(["nll", *common, "--n", "4", "--method", "bound"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dim"] == 64 and report["dequantised"] and np.isfinite(report["nll"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate"], "evaluate compares samples with data: give --dataset"),
        (["nll"], "nll measures the likelihood of data: give --dataset"),
        (["evaluate", "--dataset", "shapes"], "shape (1, 16, 16); the diffusers model makes"),
        (["evaluate", "--dataset", "swissroll"], "swissroll has examples of shape (2,)"),
        (["evaluate", "--process", "edm"], "leave out --run, --oracle and --process"),
    ],
)
def test_measuring_a_diffusers_model_needs_matching_images(pipeline_dir, capsys, argv, message):
    assert main([*argv[:1], "--diffusers", str(pipeline_dir), *argv[1:], "--n", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_tune_grid_tunes_a_diffusers_model(pipeline_dir, tmp_path, capsys):
    """`tune-grid --diffusers DIR` tunes against the imported network's own trajectories; the
    grid it saves is a valid grid for the sampler and steps asked for, and never worse than
    the best standard grid it starts from."""
    from diffusion.io.grids import read_grids
    from diffusion.samplers.tuning import grid_key

    out = tmp_path / "grids.json"
    argv = ["tune-grid", "--diffusers", str(pipeline_dir), "--steps", "3", "--sampler", "unipc",
            "--n", "8", "--iterations", "6", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    times = read_grids(out)[grid_key("unipc", 3, {})]["times"]
    assert len(times) == 4 and times[0] == 1 and times[-1] == 0  # read_grids checks the rest
    assert all(round(t * T) == t * T for t in times)  # on the DDPM's own steps
    printed = capsys.readouterr().out
    best = float(printed.split("best standard grid (")[1].split("): ")[1].split()[0])
    tuned = float(printed.split("tuned grid: ")[1].split()[0])
    assert tuned <= best
    assert f"grid: {' '.join(f'{t:.6g}' for t in times)}" in printed
