"""--log tensorboard: event files beside log.csv with the same per-step values, the snapshots
and the metrics; a resumed run's events hold every step once (purge_step)."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)

from diffusion.io.tensorboard_log import FOLDER, TensorBoardLog
from diffusion.io.trainlog import read_log
from diffusion.training.config import TrainConfig
from diffusion.workflows.run import run_training

CONFIG = dict(dataset="moons", train_steps=130, width=16, depth=1, batch_size=64, n_train=500,
              diffusion_steps=50, sample_steps=5, eval_samples=200, snapshot_samples=50,
              snapshot_every=100, checkpoint_every=60, log="tensorboard")  # fmt: skip


def events(run_dir) -> EventAccumulator:
    accumulator = EventAccumulator(str(run_dir / FOLDER), size_guidance={"scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.fixture(scope="module")
def board_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tb") / "run"
    run_training(TrainConfig(**CONFIG), run_dir, progress=False)
    return run_dir


def test_events_hold_the_logs_steps_snapshots_and_metrics(board_run):
    found = events(board_run)
    rows = read_log(board_run / "log.csv")
    losses = found.Scalars("train/loss")
    assert [e.step for e in losses] == [r["step"] for r in rows] == list(range(1, 131))
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in rows], rel=1e-6)
    assert [e.value for e in found.Scalars("train/lr")] == pytest.approx([r["lr"] for r in rows])
    assert [e.step for e in found.Images("samples")] == [1, 100, 130]  # the snapshots
    ratio = found.Scalars("metrics/sliced_wasserstein/ratio")
    assert len(ratio) == 1 and ratio[0].step == 130 and ratio[0].value > 0


def test_a_resume_purges_the_steps_it_takes_again(board_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(board_run, run_dir)
    # as if killed after the log reached step 130 but resumed from a checkpoint at step 100:
    # steps 101-130 are written again, with other values
    board = TensorBoardLog(run_dir, 100, shape=(2,))
    board.append([{"step": s, "loss": -1.0, "lr": 0.0, "grad_norm": 0.0, "skipped": 0}
                  for s in range(101, 131)])  # fmt: skip
    board.close()
    losses = events(run_dir).Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, 131))  # each once
    assert all(e.value == -1.0 for e in losses[100:]) and all(e.value != -1 for e in losses[:100])
