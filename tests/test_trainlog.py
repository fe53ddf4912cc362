"""The training log (log.csv): one row per step, the values the trainer used, and a resumed
run's log holds every step once (the SIGKILL case: tests/test_cli_resume.py)."""

from __future__ import annotations

import math

import torch

from diffusion.io.checkpoints import latest_checkpoint, load_checkpoint
from diffusion.io.trainlog import COLUMNS, TrainingLog, read_log
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer, lr_factor
from diffusion.workflows.run import run_training


def row(step: int, loss: float = 0.5) -> dict:
    return {"step": step, "loss": loss, "lr": 1e-3, "grad_norm": 2.0, "skipped": 0,
            "seconds": 0.1 * step}  # fmt: skip


def test_log_round_trips_and_a_resume_drops_the_steps_after_it(tmp_path):
    log = TrainingLog(tmp_path / "log.csv")
    log.start(0)
    log.append([row(1), row(2, math.nan), row(3)])
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
    rows = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert math.isnan(rows[1]["loss"]) and rows[2]["seconds"] == 0.3
    log.start(2)  # resumed from a checkpoint at step 2: step 3 is taken again
    log.append([row(3, 0.25)])
    rows = read_log(tmp_path / "log.csv")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 0.5), (2, rows[1]["loss"]), (3, 0.25)]


def test_a_torn_last_line_is_left_out(tmp_path):
    log = TrainingLog(tmp_path / "log.csv")
    log.start(0)
    log.append([row(1), row(2)])
    with (tmp_path / "log.csv").open("a") as f:
        f.write("3,0.4")  # a write cut short by a kill
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == [1, 2]
    assert read_log(tmp_path / "missing.csv") == []


def test_a_run_logs_every_step_with_the_values_it_used(tmp_path):
    config = TrainConfig(dataset="moons", train_steps=130, width=16, depth=1, batch_size=64,
                         n_train=500, diffusion_steps=50, sample_steps=5, eval_samples=200,
                         snapshot_samples=50, snapshot_every=100, checkpoint_every=60,
                         warmup=20)  # fmt: skip
    run_training(config, tmp_path / "run", progress=False)
    rows = read_log(tmp_path / "run" / "log.csv")
    assert [r["step"] for r in rows] == list(range(1, 131))
    losses = load_checkpoint(latest_checkpoint(tmp_path / "run")).losses
    assert [r["loss"] for r in rows] == losses.tolist()  # float32 values, exactly
    expected_lr = [
        config.lr * lr_factor(s - 1, 20, 130, config.min_lr_ratio) for s in range(1, 131)
    ]
    assert [r["lr"] for r in rows] == expected_lr
    assert all(r["grad_norm"] > 0 and r["skipped"] == 0 for r in rows)
    seconds = torch.tensor([r["seconds"] for r in rows])
    assert (seconds.diff() >= 0).all() and seconds[-1] > 0


def test_a_run_resumed_after_its_log_ran_ahead_of_its_checkpoint_logs_each_step_once(tmp_path):
    # As if killed after the log's flush at step 130 but before a checkpoint at step 130 was
    # written: the resumed run takes steps 121-130 again; its log must not hold them twice.
    config = TrainConfig(dataset="moons", train_steps=130, width=16, depth=1, batch_size=64,
                         n_train=500, diffusion_steps=50, sample_steps=5, snapshot_samples=50,
                         snapshot_every=1000)  # fmt: skip
    log = TrainingLog(tmp_path / "log.csv")
    log.start(0)
    trainer = Trainer(config)
    trainer.run(progress=False, until=120, on_log=log.append)
    state = trainer.state()
    trainer.run(progress=False, on_log=log.append)
    before = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in before] == list(range(1, 131))
    resumed = Trainer(config)
    resumed.load_state(state)
    log.start(state.step)
    resumed.run(progress=False, on_log=log.append)
    after = read_log(tmp_path / "log.csv")
    assert [r["step"] for r in after] == list(range(1, 131))

    def values(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]

    assert values(after) == values(before)
