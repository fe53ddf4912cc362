"""Kill a training run with SIGKILL at random moments, resume it each time, and compare.

    python benchmarks/kill_resume.py                # 10 kills (the bar of issue 3)
    python benchmarks/kill_resume.py --kills 3 --quick --json out.json
    python benchmarks/kill_resume.py --images --json benchmarks/kill_resume_images.json

1. A reference run trains to the end without interruption (a child process).
2. The same command starts again in another directory and is killed with SIGKILL after a
   random delay (anywhere from start-up to writing the outputs); then `diffusion train
   --resume` continues it, and is itself killed, and so on. When a chain of resumes reaches
   the end, its final weights are compared with the reference and a new chain starts, until
   the requested number of kills has happened.
3. After every kill, every file under a final name in the run directory is opened and
   checked (JSON, TOML, safetensors with checksum, GIF and PNG frames, NPY, and the training
   log: steps 1, 2, ... each once).
4. Each chain's training log (log.csv) must hold every step exactly once, with the same
   loss, learning rate, gradient norm and skipped flag as the reference run's log.

Prints one line per kill and a summary; `--json` writes the figures. Both runs use the same
thread count, so on one machine the comparison is bit for bit.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from diffusion.io.checkpoints import list_checkpoints
from diffusion.io.tensorfile import CheckpointError, read_tensor_file
from diffusion.io.trainlog import read_log

FULL = [
    "--train-steps", "3000", "--width", "32", "--depth", "2", "--batch-size", "256",
    "--diffusion-steps", "100", "--sample-steps", "50", "--checkpoint-every", "100",
    "--eval-samples", "2000", "--snapshot-samples", "500", "--snapshot-every", "500",
]  # fmt: skip
QUICK = [
    "--train-steps", "600", "--width", "16", "--depth", "1", "--batch-size", "128",
    "--diffusion-steps", "50", "--sample-steps", "20", "--checkpoint-every", "50",
    "--eval-samples", "500", "--snapshot-samples", "200", "--snapshot-every", "200",
    "--n-train", "5000",
]  # fmt: skip

#: an image run: the digits with a small U-Net (the same guarantees as for the MLP).
IMAGES = [
    "--dataset", "digits", "--train-steps", "300", "--unet-channels", "8",
    "--batch-size", "64", "--sample-steps", "6", "--checkpoint-every", "25",
    "--eval-samples", "300", "--snapshot-samples", "16", "--snapshot-every", "100",
]  # fmt: skip


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "diffusion", "train", "--quiet", *args]


def next_argv(run_dir: Path, options: list[str]) -> list[str]:
    """--resume, or a fresh start when the run was killed before it wrote config.json."""
    if (run_dir / "config.json").exists():
        return ["--resume", str(run_dir)]
    return [*options, "--out", str(run_dir)]


def environment() -> dict[str, str]:
    # One thread in every child: the reference and the resumed runs compute alike.
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def unreadable_files(run_dir: Path) -> list[str]:
    """Every file under a final name that cannot be read completely, with the reason."""
    problems = []
    for path in sorted(run_dir.rglob("*")):
        if path.is_dir() or path.name.startswith("."):  # .name.xyz.tmp: unfinished writes
            continue
        try:
            if path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".toml":
                tomllib.loads(path.read_text())
            elif path.suffix == ".safetensors":
                read_tensor_file(path)
            elif path.suffix in (".gif", ".png"):
                with Image.open(path) as image:
                    for frame in range(getattr(image, "n_frames", 1)):
                        image.seek(frame)
                        image.load()
            elif path.suffix == ".npy":
                np.load(path, allow_pickle=False)
            elif path.suffix == ".csv":
                steps = [row["step"] for row in read_log(path)]
                if steps != list(range(1, len(steps) + 1)):
                    problems.append(f"{path}: steps {steps[:3]}... not 1, 2, ... each once")
            else:
                problems.append(f"{path}: unexpected file")
        except (CheckpointError, OSError, ValueError, SyntaxError, EOFError) as exc:
            problems.append(f"{path}: {exc}")
    return problems


def phase(run_dir: Path) -> str:
    """Where the killed run had got to, judged by what it left behind."""
    if (run_dir / "metrics.json").exists():
        return "finished"
    if (run_dir / "model.safetensors").exists():
        return "writing outputs"
    checkpoints = list_checkpoints(run_dir)
    if checkpoints:
        return f"training (checkpoint at step {checkpoints[-1][0]})"
    return "training (no checkpoint yet)" if (run_dir / "config.json").exists() else "start-up"


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    """The EMA model and the last training checkpoint (raw weights, EMA, optimizer, RNG)."""
    model, _ = read_tensor_file(run_dir / "model.safetensors")
    state, _ = read_tensor_file(list_checkpoints(run_dir)[-1][1])
    return {**{f"final/{k}": v for k, v in model.items()}, **state}


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def log_record(run_dir: Path) -> list[tuple]:
    """The training log without its wall times (which differ between runs), as text."""
    return [tuple(repr(row[k]) for k in ("step", "loss", "lr", "grad_norm", "skipped"))
            for row in read_log(run_dir / "log.csv")]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    parser.add_argument("--quick", action="store_true", help="a smaller run (for the tests)")
    parser.add_argument("--images", action="store_true", help="an image run (digits, U-Net)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    options = IMAGES if args.images else QUICK if args.quick else FULL
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        subprocess.run(
            command(*options, "--out", str(root / "reference")),
            env=environment(), check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        reference_seconds = time.perf_counter() - start
        reference = final_tensors(root / "reference")
        reference_log = log_record(root / "reference")
        print(f"reference run: {reference_seconds:.1f} s")

        kills, chains, logs, unreadable, log = 0, [], [], 0, []
        while kills < args.kills:
            run_dir = root / f"chain-{len(chains)}"
            while True:
                child = subprocess.Popen(
                    command(*next_argv(run_dir, options)), env=environment(), stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )  # fmt: skip
                delay = rng.uniform(0.2, reference_seconds)
                try:
                    child.wait(timeout=delay)
                except subprocess.TimeoutExpired:
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                if child.returncode != -signal.SIGKILL:
                    if child.returncode != 0:
                        raise SystemExit(f"run failed: {child.stderr.read().decode()}")
                    break  # finished before the kill: compare below
                kills += 1
                problems = unreadable_files(run_dir)
                unreadable += len(problems)
                where = phase(run_dir)
                log.append({"kill": kills, "after_s": round(delay, 2), "phase": where,
                            "unreadable": problems})  # fmt: skip
                print(f"kill {kills:2d} after {delay:5.1f} s: {where}; unreadable files: "
                      f"{len(problems)}")  # fmt: skip
                for problem in problems:
                    print(f"    {problem}")
                if kills >= args.kills:  # last kill: run to the end without interruption
                    subprocess.run(
                        command(*next_argv(run_dir, options)), env=environment(), check=True,
                        stdout=subprocess.DEVNULL,
                    )  # fmt: skip
                    break
            same = identical(final_tensors(run_dir), reference)
            chains.append(same)
            logs.append(log_record(run_dir) == reference_log)
            print(f"chain {len(chains)} finished: weights, EMA, optimizer and RNG "
                  f"{'bit-identical to' if same else 'DIFFERENT from'} the reference; "
                  f"log.csv {'the same as' if logs[-1] else 'DIFFERENT from'} the reference's "
                  f"({len(reference_log)} steps, each once)")  # fmt: skip

    summary = {
        "kills": kills,
        "chains": len(chains),
        "identical_chains": sum(chains),
        "identical_logs": sum(logs),
        "unreadable_files": unreadable,
        "reference_seconds": round(reference_seconds, 1),
        "log": log,
    }
    print(f"{kills} SIGKILLs in {len(chains)} chains: {sum(chains)}/{len(chains)} chains "
          f"bit-identical, {unreadable} unreadable files")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(chains) and all(logs) and unreadable == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
