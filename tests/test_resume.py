"""Exact resume: a run stopped at any step and continued from its checkpoint file ends
bit-identical to a run that never stopped; dropping any part of the state breaks that."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import diffusion.training.loop
from diffusion.io.checkpoints import (
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    remove_temporary_files,
    save_checkpoint,
)
from diffusion.io.tensorfile import CheckpointError
from diffusion.training.config import TrainConfig
from diffusion.training.loop import MAX_NONFINITE_STREAK, NonFiniteLossError, Trainer
from diffusion.training.state import TrainingState
from diffusion.workflows.run import run_training

SMALL = dict(
    process="ddpm", train_steps=60, width=16, depth=1, diffusion_steps=50, sample_steps=10,
    snapshot_every=25,
    snapshot_samples=100, n_train=500, batch_size=64, warmup=10, eval_samples=500,
)  # fmt: skip


def config(**changes) -> TrainConfig:
    return TrainConfig(**{**SMALL, **changes})


@pytest.fixture(scope="module")
def reference() -> TrainingState:
    """The final state of the uninterrupted run."""
    trainer = Trainer(config())
    trainer.run(progress=False)
    return trainer.state()


def assert_same(a: TrainingState, b: TrainingState) -> None:
    assert a.step == b.step and a.data_position == b.data_position
    for name in ("model", "ema"):
        first, second = getattr(a, name), getattr(b, name)
        assert first.keys() == second.keys()
        for key in first:
            assert torch.equal(first[key], second[key]), f"{name}.{key} differs"
    assert len(a.optimizer) == len(b.optimizer)
    for x, y in zip(a.optimizer, b.optimizer, strict=True):
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
    assert torch.equal(a.rng, b.rng)
    assert torch.equal(a.losses, b.losses)
    assert [s for s, _ in a.snapshots] == [s for s, _ in b.snapshots]
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.snapshots, b.snapshots, strict=True))


def stopped_at(step: int, tmp_path) -> TrainingState:
    """Train to `step`, write the checkpoint file, and read it back."""
    trainer = Trainer(config())
    trainer.run(progress=False, until=step)
    path = save_checkpoint(tmp_path, trainer.state())
    return load_checkpoint(path)


def finish(state: TrainingState, **changes) -> TrainingState:
    trainer = Trainer(config(**changes))
    trainer.load_state(state)
    trainer.run(progress=False)
    return trainer.state()


@pytest.mark.parametrize("step", [0, 1, 7, 25, 33, 59, 60])
def test_resume_through_a_checkpoint_file_is_bit_identical(step, reference, tmp_path):
    assert_same(finish(stopped_at(step, tmp_path)), reference)


def test_resuming_twice_is_bit_identical(reference, tmp_path):
    trainer = Trainer(config())
    trainer.run(progress=False, until=13)
    again = Trainer(config())
    again.load_state(load_checkpoint(save_checkpoint(tmp_path, trainer.state())))
    again.run(progress=False, until=41)
    assert_same(finish(load_checkpoint(save_checkpoint(tmp_path, again.state()))), reference)


def drop(state: TrainingState, part: str) -> TrainingState:
    """`state` as if the checkpoint had not stored `part` (what a fresh run would have)."""
    fresh = Trainer(config()).state()
    if part == "rng":
        return dataclasses.replace(state, rng=fresh.rng)
    if part == "optimizer":
        return dataclasses.replace(state, optimizer=fresh.optimizer)
    if part == "ema":  # a naive resume starts the EMA from the restored weights
        return dataclasses.replace(state, ema=state.model)
    if part == "step":
        return dataclasses.replace(state, step=0, losses=state.losses[:0], snapshots=[])
    if part == "data_position":
        return dataclasses.replace(state, data_position=0)
    raise AssertionError(part)


@pytest.mark.parametrize("part", ["rng", "optimizer", "ema", "step", "data_position"])
def test_negative_control_dropping_any_part_breaks_the_comparison(part, reference, tmp_path):
    state = stopped_at(30, tmp_path)
    assert_same(finish(state), reference)  # the intact state passes ...
    # ... and without the part the run either ends elsewhere or (where the other parts
    # contradict it: optimizer, step, data position) is refused when loaded.
    with pytest.raises((AssertionError, CheckpointError)):
        assert_same(finish(drop(state, part)), reference)


@pytest.mark.parametrize("part", ["rng", "optimizer", "ema", "step", "data_position"])
def test_negative_control_without_the_consistency_check(part, reference, tmp_path, monkeypatch):
    """With the loader's cross-checks switched off, the comparison alone still catches it."""
    monkeypatch.setattr(diffusion.training.loop, "inconsistencies", lambda *args: [])
    state = stopped_at(30, tmp_path)
    with pytest.raises(AssertionError):
        assert_same(finish(drop(state, part)), reference)


def test_more_steps_on_resume_continue_the_run(tmp_path):
    state = stopped_at(60, tmp_path)
    longer = finish(state, train_steps=80)
    assert longer.step == 80 and longer.losses.shape == (80,)
    assert torch.equal(longer.losses[:60], state.losses)


@pytest.mark.parametrize(
    ("field", "value"),
    [("width", 32), ("depth", 2), ("schedule", "linear"), ("prediction", "eps"),
     ("seed", 1), ("dataset", "moons"), ("batch_size", 32), ("diffusion_steps", 60)],
)  # fmt: skip
def test_a_changed_critical_setting_is_refused_by_name(field, value, tmp_path):
    state = stopped_at(10, tmp_path)
    trainer = Trainer(config(**{field: value}))
    with pytest.raises(CheckpointError, match=f"{field} differs"):
        trainer.load_state(state)


def test_fewer_steps_than_the_checkpoint_are_refused(tmp_path):
    state = stopped_at(40, tmp_path)
    with pytest.raises(CheckpointError, match="beyond train_steps"):
        Trainer(config(train_steps=30)).load_state(state)


def test_changed_data_are_refused(tmp_path):
    state = stopped_at(5, tmp_path)
    with pytest.raises(CheckpointError, match="training data differ"):
        Trainer(config()).load_state(dataclasses.replace(state, data_sha256="0" * 64))


def test_checkpoints_are_verified_and_older_ones_removed(tmp_path):
    trainer = Trainer(config())
    for until in (10, 20, 30):
        trainer.run(progress=False, until=until)
        save_checkpoint(tmp_path, trainer.state())
    assert [step for step, _ in list_checkpoints(tmp_path)] == [30]
    (tmp_path / "checkpoints" / ".step-00000040.safetensors.abc.tmp.safetensors").write_bytes(
        b"half"
    )
    assert len(remove_temporary_files(tmp_path)) == 1
    assert load_checkpoint(latest_checkpoint(tmp_path)).step == 30


def poison(trainer: Trainer, bad_steps: set[int]) -> None:
    """Make the loss NaN at the given (0-based) steps."""
    loss = trainer.process.loss

    def poisoned(model, x0, t=None, *, generator=None):
        value = loss(model, x0, t, generator=generator)
        return value * math.nan if trainer.step in bad_steps else value

    trainer.process.loss = poisoned


def test_a_non_finite_step_is_skipped_and_counted():
    trainer = Trainer(config())
    trainer.run(progress=False, until=20)
    before = trainer.state()
    poison(trainer, {20})
    trainer.run(progress=False, until=21)
    after = trainer.state()
    assert after.skipped == 1 and math.isnan(after.losses[20])
    for name in ("model", "ema"):  # the skipped step changed no weight ...
        assert all(
            torch.equal(getattr(before, name)[k], getattr(after, name)[k]) for k in before.model
        )
    for x, y in zip(before.optimizer, after.optimizer, strict=True):  # ... nor the optimizer
        assert all(torch.equal(x[k], y[k]) for k in x)
    trainer.run(progress=False)
    final = trainer.state()
    assert final.skipped == 1
    assert all(torch.isfinite(v).all() for v in final.model.values())


def test_persistent_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = config(train_steps=200, checkpoint_every=50, snapshot_every=100)
    original = Trainer.run

    def run(self, **kwargs):
        poison(self, set(range(120, 200)))
        return original(self, **kwargs)

    monkeypatch.setattr(Trainer, "run", run)
    with pytest.raises(NonFiniteLossError, match="not finite for") as info:
        run_training(cfg, tmp_path / "run", progress=False)
    assert info.value.streak >= MAX_NONFINITE_STREAK
    assert "step-00000100" in str(info.value)
    last = latest_checkpoint(tmp_path / "run")
    state = load_checkpoint(last)
    assert state.step == 100 and state.skipped == 0
    assert not (tmp_path / "run" / "model.safetensors").exists()
