"""Stopping cleanly on SIGTERM and SIGINT: finish the step, write a checkpoint, exit.

Clusters and spot machines stop a job with SIGTERM, people with Ctrl-C (SIGINT). While a run
trains inside `stop_on_signals(trainer)`, the first such signal sets `trainer.stop_signal`:
the step under way finishes, the run writes a checkpoint and `Trainer.run` raises `Stopped`;
the command then says how to resume and exits with 128 + the signal's number, as a process
killed by it would (143 for SIGTERM, 130 for SIGINT). A second signal stops the process at
once. One signal often arrives twice, from the launcher (torchrun passes it on to its
processes) and from the scheduler that signals the whole process group, so a repeat within
`REPEAT_SECONDS` of the first counts as the same request.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: a second signal within this many seconds of the first is the same request delivered twice
REPEAT_SECONDS = 2.0
SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals(trainer) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT ask `trainer` to stop after its current step; the
    handlers that were there before come back on the way out. Does nothing outside the main
    thread (where Python cannot install signal handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[float] = []

    def handle(number: int, frame) -> None:
        now = time.monotonic()
        if not first:
            first.append(now)
            trainer.stop_signal = number
            name = signal.Signals(number).name
            print(f"\n{name}: stopping after this step and writing a checkpoint "
                  f"(send it again to stop at once)", flush=True)  # fmt: skip
            return
        if now - first[0] < REPEAT_SECONDS:
            return
        signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)

    previous = {number: signal.signal(number, handle) for number in SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
