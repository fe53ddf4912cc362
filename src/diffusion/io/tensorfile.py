"""One file format for every tensor we write: safetensors with JSON metadata and a checksum.

safetensors stores raw tensor bytes behind a JSON header, so reading a file never runs code
(unlike pickle, which `torch.load` uses). On top of it we keep two header entries:

- ``meta``: our own JSON (what the file is, the config, counters);
- ``sha256``: a digest of ``meta`` and of every tensor's name, dtype, shape and bytes.

A file is accepted only when it parses as safetensors and the digest matches, so a truncated
file, random bytes, a pickle renamed to ``.safetensors`` or a flipped bit are all refused with
a one-line `CheckpointError`. Files are written through `atomic_write`: a process killed
mid-write leaves the previous file (or none) under the final name, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from diffusion.errors import CheckpointError
from diffusion.utils import atomic_write

__all__ = ["CheckpointError", "read_tensor_file", "write_tensor_file"]


def digest(tensors: dict[str, torch.Tensor], meta_json: str) -> str:
    """sha256 over the metadata text and each tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    h.update(meta_json.encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"\0{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def write_tensor_file(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write `tensors` and the JSON-able `meta` to `path` atomically, with a checksum."""
    cpu = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta_json = json.dumps(meta, sort_keys=True, allow_nan=False)
    header = {"meta": meta_json, "sha256": digest(cpu, meta_json)}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=header))


def read_tensor_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `write_tensor_file`; CheckpointError unless it is intact."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        tensors = load_file(str(path))
        with open(path, "rb") as f:  # the header: 8-byte length, then JSON
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        stored = header["__metadata__"]
        meta_json, checksum = stored["meta"], stored["sha256"]
        meta = json.loads(meta_json)
    except KeyError as exc:
        raise CheckpointError(
            f"{path} is not a checkpoint written by diffusion (no {exc} entry in its header)"
        ) from None
    except (SafetensorError, OSError, ValueError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(
            f"{path} is not a checkpoint written by diffusion ({first})"
        ) from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has malformed metadata")
    if digest(tensors, meta_json) != checksum:
        raise CheckpointError(f"{path} is damaged: its checksum does not match its contents")
    return tensors, meta
