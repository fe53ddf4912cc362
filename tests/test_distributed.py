"""Training on several processes (torchrun, gloo on the CPU), stopping on signals, and one
trainer per run directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffusion.cli import main
from diffusion.io.checkpoints import latest_checkpoint, load_checkpoint
from diffusion.io.lock import LOCK_NAME, run_lock
from diffusion.training.loop import Trainer

FAST = [
    "--width", "16", "--depth", "1", "--diffusion-steps", "50", "--sample-steps", "10",
    "--n-train", "500", "--batch-size", "64", "--eval-samples", "300",
    "--snapshot-samples", "100", "--snapshot-every", "20", "--quiet",
]  # fmt: skip
#: measured: 2 processes against 1 after 40 steps, largest weight difference 3e-8 (weights
#: of size ~1): the float round-off of averaging two half-batch gradients
TOLERANCE = 1e-6


def train_command(*args: str, nproc: int | None = None) -> list[str]:
    extra = [] if nproc is None else ["--nproc", str(nproc)]
    return [sys.executable, "-m", "diffusion", "train", *FAST, *extra, *args]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run(command: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          env=environment())  # fmt: skip


def final_state(run_dir: Path):
    return load_checkpoint(latest_checkpoint(run_dir))


def assert_same_state(a, b) -> None:
    """Bit for bit: step, weights, EMA, optimizer moments, generator, losses."""
    assert a.step == b.step and a.data_position == b.data_position
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]), key
        assert torch.equal(a.ema[key], b.ema[key]), key
    for x, y in zip(a.optimizer, b.optimizer, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert torch.equal(a.rng, b.rng)
    assert torch.equal(a.losses, b.losses)


def test_two_processes_train_the_weights_of_one(tmp_path):
    steps = ["--train-steps", "40", "--checkpoint-every", "20"]
    assert main(["train", *FAST, *steps, "--out", str(tmp_path / "one")]) == 0
    for name in ("two", "again"):
        done = run(train_command(*steps, "--out", str(tmp_path / name), nproc=2))
        assert done.returncode == 0, done.stderr[-2000:]
    one, two = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert_same_state(two, final_state(tmp_path / "again"))  # one seed: bit-identical
    assert one.step == two.step == 40
    for key in one.model:  # the same global batch, times and noise: round-off apart
        assert torch.allclose(one.model[key], two.model[key], atol=TOLERANCE, rtol=0), key
        assert torch.allclose(one.ema[key], two.ema[key], atol=TOLERANCE, rtol=0), key
    assert torch.allclose(one.losses, two.losses, atol=TOLERANCE)
    assert torch.equal(one.rng, two.rng)  # every process draws the whole batch's randomness
    # only the first process wrote the run's files
    assert (tmp_path / "two" / "model.safetensors").is_file()
    assert (tmp_path / "two" / "metrics.json").is_file()


def stop_at(monkeypatch, step: int, number: int = signal.SIGTERM) -> None:
    """Send this process `number` during training step `step` (counting from 1)."""
    real = Trainer.train_step

    def train_step(self) -> None:
        if self.step + 1 == step:
            os.kill(os.getpid(), number)
        real(self)

    monkeypatch.setattr(Trainer, "train_step", train_step)


@pytest.mark.parametrize(("number", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(
    tmp_path, capsys, monkeypatch, number, code
):
    steps = ["--train-steps", "40", "--checkpoint-every", "40"]  # the last step's, and the stop's
    assert main(["train", *FAST, *steps, "--out", str(tmp_path / "whole")]) == 0
    stop_at(monkeypatch, 25, number)
    capsys.readouterr()
    assert main(["train", *FAST, *steps, "--out", str(tmp_path / "cut")]) == code
    err = capsys.readouterr().err
    name = signal.Signals(number).name
    assert f"stopped by {name} at step 25" in err
    assert f"continue with: diffusion train --resume {tmp_path / 'cut'}" in err
    assert final_state(tmp_path / "cut").step == 25
    assert not (tmp_path / "cut" / "model.safetensors").exists()  # outputs only at the end
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers put back
    monkeypatch.undo()
    assert main(["train", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert_same_state(final_state(cut), final_state(whole))


def test_a_second_trainer_is_refused_and_the_first_goes_on(tmp_path, capsys):
    run_dir = tmp_path / "run"
    first = subprocess.Popen(train_command("--train-steps", "1500", "--checkpoint-every", "300",
                                           "--out", str(run_dir)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=environment())  # fmt: skip
    deadline = time.monotonic() + 120
    while latest_checkpoint(run_dir) is None:  # the first is training and holds the lock
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.1)
    capsys.readouterr()
    code = main(["train", "--resume", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and f"is being trained by process {first.pid}" in err
    assert len(err.strip().splitlines()) == 1
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-2000:]
    assert final_state(run_dir).step == 1500 and (run_dir / "metrics.json").is_file()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    run_dir = tmp_path / "run"
    code = "import sys, time; from diffusion.io.lock import run_lock\n" \
           "with run_lock(sys.argv[1]):\n    print('locked', flush=True); time.sleep(60)"  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with (
        pytest.raises(Exception, match=f"being trained by process {holder.pid}"),
        run_lock(run_dir),
    ):
        pass
    holder.kill()
    holder.wait()
    with run_lock(run_dir):  # the OS released it with the process
        assert (run_dir / LOCK_NAME).read_text().strip() == str(os.getpid())


def test_bad_launches_are_one_line_errors_that_write_nothing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["train", *FAST, "--batch-size", "63", "--nproc", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "batch_size 63 does not split over 2 processes" in err
    assert len(err.strip().splitlines()) == 1
    for name, value in (("WORLD_SIZE", "2"), ("RANK", "0"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)  # as if launched, but with no rendezvous address
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(["train", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "without MASTER_ADDR" in err and len(err.strip().splitlines()) == 1
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert main(["train", *FAST, "--batch-size", "63", "--out", str(out)]) == 2
    assert "does not split over 2" in capsys.readouterr().err
    assert not out.exists()


def worker_pids(launcher: subprocess.Popen) -> list[int]:
    """The training processes under `diffusion train --nproc` (which starts torchrun, which
    starts them): its descendants that have no children of their own."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    descendants, frontier = set(), {launcher.pid}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier}
        descendants |= frontier
    return sorted(pid for pid in descendants if pid not in parents.values())


def wait_for_checkpoint(run_dir: Path, launcher: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while latest_checkpoint(run_dir) is None:
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()
        time.sleep(0.1)


LONG = ["--train-steps", "3000", "--checkpoint-every", "250"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    """A 2-process run of 3,000 steps, start to end."""
    run_dir = tmp_path_factory.mktemp("whole") / "run"
    done = run(train_command(*LONG, "--out", str(run_dir), nproc=2))
    assert done.returncode == 0, done.stderr[-2000:]
    return run_dir


@pytest.mark.slow
def test_a_killed_process_stops_the_others_and_resume_is_exact(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(train_command(*LONG, "--out", str(run_dir), nproc=2),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environment())  # fmt: skip
    wait_for_checkpoint(run_dir, launcher)
    workers = worker_pids(launcher)
    assert len(workers) == 2
    os.kill(workers[-1], signal.SIGKILL)
    killed = time.monotonic()
    launcher.communicate(timeout=120)
    assert launcher.returncode != 0 and time.monotonic() - killed < 60
    assert latest_checkpoint(run_dir) is not None
    done = run([sys.executable, "-m", "diffusion", "train", "--resume", str(run_dir), "--quiet",
                "--nproc", "2"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_state(final_state(run_dir), final_state(uninterrupted))


@pytest.mark.slow
def test_sigterm_stops_every_process_at_one_step_and_resume_is_exact(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    launcher = subprocess.Popen(train_command(*LONG, "--out", str(run_dir), nproc=2),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=environment(), start_new_session=True)  # fmt: skip
    wait_for_checkpoint(run_dir, launcher)
    os.killpg(launcher.pid, signal.SIGTERM)  # as a scheduler does: the whole process group
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode != 0
    assert "stopped by SIGTERM at step" in err, err[-2000:]
    stopped = final_state(run_dir).step
    assert 0 < stopped < 3000 and f"at step {stopped};" in err
    done = run([sys.executable, "-m", "diffusion", "train", "--resume", str(run_dir), "--quiet",
                "--nproc", "2"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_state(final_state(run_dir), final_state(uninterrupted))


def test_bf16_autocast_trains_to_the_fp32_losses_to_bfloat16_precision():
    from diffusion.training.config import TrainConfig

    losses = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(dataset="swissroll", train_steps=30, width=32, depth=2,
                             batch_size=128, precision=precision, snapshot_every=1000)  # fmt: skip
        trainer = Trainer(config)
        losses[precision] = trainer.run(progress=False).losses
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    assert not torch.equal(losses["fp32"], losses["bf16"])  # the forward ran in bfloat16
    assert torch.allclose(losses["fp32"], losses["bf16"], rtol=2e-2)  # 8 bits of mantissa


@pytest.mark.slow
def test_a_one_process_run_resumed_on_two_gives_the_one_process_weights(tmp_path, monkeypatch):
    # The random draws do not depend on the number of processes, so a run may change it on
    # resume: only the round-off of averaging the partial gradients differs.
    steps = ["--train-steps", "40", "--checkpoint-every", "40"]
    assert main(["train", *FAST, *steps, "--out", str(tmp_path / "whole")]) == 0
    stop_at(monkeypatch, 20)
    assert main(["train", *FAST, *steps, "--out", str(tmp_path / "cut")]) == 143
    monkeypatch.undo()
    done = run([sys.executable, "-m", "diffusion", "train", "--resume", str(tmp_path / "cut"),
                "--quiet", "--nproc", "2"])  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    whole, cut = final_state(tmp_path / "whole"), final_state(tmp_path / "cut")
    assert whole.step == cut.step == 40 and torch.equal(whole.rng, cut.rng)
    for key in whole.model:
        assert torch.allclose(whole.model[key], cut.model[key], atol=TOLERANCE, rtol=0), key
    assert torch.equal(whole.losses[:20], cut.losses[:20])  # before the change: the same run
    assert torch.allclose(whole.losses, cut.losses, atol=TOLERANCE)


def test_two_processes_sample_their_shares_from_their_own_streams(tiny_run, tmp_path):
    import numpy as np

    from diffusion.cli.sample import share_generator, share_of
    from diffusion.io.runs import load_model

    run_dir, n = tiny_run[0], 1001
    command = [sys.executable, "-m", "diffusion", "sample", "--run", str(run_dir), "--n",
               str(n), "--sample-steps", "5", "--nproc", "2"]  # fmt: skip
    for name in ("a.npy", "b.npy"):
        done = run([*command, "--out", str(tmp_path / name)])
        assert done.returncode == 0, done.stderr[-2000:]
    assert "on 2 processes" in done.stdout
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (n, 2) and np.array_equal(a, b)  # one seed, one process count: the same
    # rank r's rows are what its own stream draws, in order (gathered by rank 0)
    torch.set_num_threads(1)
    trained = load_model(run_dir)
    for rank in (0, 1):
        rows = share_of(n, rank, 2)
        mine = trained.sample(len(rows), steps=5, generator=share_generator(0, rank, 2, "cpu"))
        assert np.allclose(a[rows.start : rows.stop], mine.x.numpy(), atol=1e-6)
    assert not np.allclose(a[:500], a[501:1001])  # two streams, not one twice
