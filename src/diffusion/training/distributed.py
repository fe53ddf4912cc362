"""Training on several processes: PyTorch's launcher (`torchrun`), one model, one result.

`torchrun --nproc-per-node N -m diffusion train ...` starts N copies of the command with
RANK, WORLD_SIZE, LOCAL_RANK and a rendezvous in their environment; `World.from_env` joins
them into one process group (gloo on the CPU, NCCL with one GPU per process on CUDA) and
the trainer wraps its network in `DistributedDataParallel`.

Every process draws the same global batch from the same permutation, and the same times and
noise for all of it from the run's one "train" stream; each then feeds only its own rows
(`shard`) to the network, and DDP averages the gradients. So the random draws, and hence the
result, do not depend on the number of processes: N processes give the weights one process
gives, up to the float round-off of averaging N partial gradients, and a run may resume with
another number of processes. The price is that each process draws the random numbers of the
whole batch, which is cheap beside the network.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from diffusion.errors import ConfigError

#: what torchrun puts in each process's environment
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: how long a collective waits for a process that has stopped answering. A process that
#: dies closes its connections, and the others fail at once; this bounds the rest.
TIMEOUT = datetime.timedelta(minutes=10)
BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run: rank `rank` of `size`."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    def shard(self, batch_size: int) -> slice | None:
        """The rows of a global batch this process trains on; None for a single process."""
        if self.size == 1:
            return None
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def check_batch(self, batch_size: int) -> None:
        """ConfigError when the batch does not split evenly over the processes."""
        if batch_size % self.size:
            raise ConfigError(f"batch_size {batch_size} does not split over {self.size} "
                              f"processes; use a multiple of {self.size}")  # fmt: skip

    def device(self, device: torch.device) -> torch.device:
        """The device of this process: its own GPU (by local rank) when `device` is CUDA."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    @classmethod
    def _launched(cls) -> World:
        """The world the launcher's environment describes (one process when there is none);
        ConfigError when a launch of several lacks any of `LAUNCH_VARIABLES`."""
        if int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return cls()
        missing = [name for name in LAUNCH_VARIABLES if name not in os.environ]
        if missing:
            raise ConfigError(f"a launch of {os.environ['WORLD_SIZE']} processes without "
                              f"{', '.join(missing)} in the environment; start it with torchrun")  # fmt: skip
        return cls(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]),
                   int(os.environ["LOCAL_RANK"]))  # fmt: skip

    @classmethod
    def check_env(cls, batch_size: int) -> None:
        """ConfigError (one line) for a launch that cannot work: launcher variables missing,
        or a batch that does not split over the processes; checked before anything is
        written."""
        cls._launched().check_batch(batch_size)

    @classmethod
    def from_env(cls, device: torch.device, backend: str = "auto") -> World:
        """Join the process group torchrun set up, or a world of one process when the command
        was not started by a launcher. ConfigError (one line) for a broken launch."""
        world = cls._launched()
        if world.size == 1:
            return world
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if backend == "nccl" and device.type != "cuda":
            raise ConfigError("the nccl backend needs --device cuda; use gloo on the CPU")
        if device.type == "cuda":
            torch.cuda.set_device(world.device(device))
        elif os.environ.get("OMP_NUM_THREADS") is None:  # share the cores, as torchrun means to
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world.size))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
        if not dist.is_initialized():
            try:
                dist.init_process_group(backend, timeout=TIMEOUT)
            except (RuntimeError, ValueError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ConfigError(f"cannot join the other {world.size - 1} processes "
                                  f"({backend}): {first}") from None  # fmt: skip
        return world


def all_sum(values: torch.Tensor, world: World) -> torch.Tensor:
    """`values` summed over the processes (in place; `values` itself for one process)."""
    if world.size > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def leave(world: World) -> None:
    """Leave the process group, if this process joined one, all processes together: one that
    tore its connections down while another still used them would abort the other."""
    if world.size > 1 and dist.is_initialized():
        with contextlib.suppress(RuntimeError):  # another process is gone: nothing to wait for
            dist.barrier()
        dist.destroy_process_group()
