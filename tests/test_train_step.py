"""The training step stays on the device: nothing is read back to the host (issue 6)."""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer

SMALL = dict(train_steps=20, batch_size=64, width=16, depth=1, n_train=500, checkpoint_every=0)


def host_reads(trainer: Trainer, steps: int = 3) -> list[str]:
    """Names of the host reads (`.item()` and its kin) made by `steps` training steps outside
    the optimizer. On the CPU the fused AdamW kernel reads its own step counter, which is free
    there; on CUDA that counter stays on the device, so the optimizer is left out."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    events = prof.events()
    optimizer = [e.time_range for e in events if e.name.startswith("Optimizer.step")]
    return [
        e.name
        for e in events
        if e.name == "aten::_local_scalar_dense"
        and not any(r.start <= e.time_range.start <= r.end for r in optimizer)
    ]


@pytest.mark.parametrize("coupling", ["independent", "ot"])
def test_a_training_step_never_reads_a_tensor_back_to_the_host(coupling):
    trainer = Trainer(TrainConfig(**SMALL, coupling=coupling))
    trainer.train_step()  # the optimizer creates its state on the first step
    assert host_reads(trainer) == []


def test_the_check_sees_a_host_read(monkeypatch):
    """Negative control: a step that reads its loss back is caught."""
    trainer = Trainer(TrainConfig(**SMALL))
    step = trainer.train_step

    def reading_step() -> None:
        step()
        trainer.losses[trainer.step - 1].item()

    monkeypatch.setattr(trainer, "train_step", reading_step)
    assert host_reads(trainer) == ["aten::_local_scalar_dense"] * 3


def test_the_ema_update_is_the_weighted_average():
    """ema <- ema + (1 - decay) (p - ema), with decay warmed up as (1 + s) / (10 + s)."""
    trainer = Trainer(TrainConfig(**SMALL, ema_decay=0.9))
    before = [p.detach().clone() for p in trainer.ema.parameters()]
    for _ in range(3):
        trainer.train_step()
    # After three steps at decays 1/10, 2/11, 3/12 (all below 0.9) from identical weights:
    # check the last update alone, from a copy of the EMA before it.
    ema = [p.detach().clone() for p in trainer.ema.parameters()]
    trainer.train_step()
    decay = min(0.9, (1 + 3) / (10 + 3))
    for e0, e1, p in zip(ema, trainer.ema.parameters(), trainer.model.parameters(), strict=True):
        torch.testing.assert_close(e1, e0 + (1 - decay) * (p.detach() - e0))
    assert any(not torch.equal(b, a) for b, a in zip(before, ema, strict=True))
