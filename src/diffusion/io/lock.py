"""One trainer per run directory: an OS lock on RUN/.lock while a process trains there.

The lock is `flock` on an open file, so the operating system releases it when the process
ends, however it ends: a killed run never leaves a stale lock behind. The file holds the
process id of the holder, to name it when a second trainer is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diffusion.errors import CheckpointError

LOCK_NAME = ".lock"


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold the lock of `run_dir` (created if needed) while inside; CheckpointError (one line,
    naming the process that holds it) when another process holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; train without the lock
        yield
        return
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            named = f"process {holder}" if holder.isdigit() else holder
            raise CheckpointError(f"{run_dir} is being trained by {named}; wait for it to "
                                  "finish or stop it first") from None  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
