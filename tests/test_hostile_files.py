"""Loading never unpickles, and every damaged or foreign file is refused with one line.

Each hostile file goes through the three loaders: `read_tensor_file` (any tensor file),
`load_model` (the file placed at model.safetensors of a run) and `load_checkpoint` (the file
placed at the run's training checkpoint). Pickle payloads would create a marker file if they
were ever unpickled; the marker must never appear.
"""

from __future__ import annotations

import json
import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from cli_helpers import forbid_compute
from safetensors.torch import save_file

import diffusion.io.runs
import diffusion.training.loop
import diffusion.workflows.run
from diffusion.cli import main
from diffusion.io.checkpoints import latest_checkpoint, load_checkpoint, state_to_file
from diffusion.io.runs import load_model, read_run_config
from diffusion.io.tensorfile import CheckpointError, read_tensor_file, write_tensor_file
from diffusion.training.build import build_model
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer

SRC = Path(diffusion.__file__).resolve().parent

SMALL = dict(
    train_steps=60, width=16, depth=1, diffusion_steps=50, sample_steps=10, n_train=500,
    batch_size=64, eval_samples=500, snapshot_samples=100, snapshot_every=30,
    checkpoint_every=30,
)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished small run with a training checkpoint at step 60."""
    run_dir = tmp_path_factory.mktemp("hostile") / "run"
    diffusion.workflows.run.run_training(TrainConfig(**SMALL), run_dir, progress=False)
    assert latest_checkpoint(run_dir).name == "step-00000060.safetensors"
    return run_dir


@pytest.fixture
def run_copy(run, tmp_path) -> Path:
    """A private copy of the run's config, model and checkpoint (no pictures)."""
    copy = tmp_path / "run"
    (copy / "checkpoints").mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / name, copy / name)
    shutil.copy(latest_checkpoint(run), copy / "checkpoints" / latest_checkpoint(run).name)
    return copy


class Payload:
    """Unpickling this opens `marker` for writing, creating it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def one_line(exc: BaseException) -> str:
    message = str(exc)
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"
    return message


# -- the payloads are live: loading them the unsafe way does create the marker --------------


def test_the_pickle_payloads_really_run_code_when_unpickled(tmp_path):
    marker = tmp_path / "control-pickle"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()
    marker2 = tmp_path / "control-torch"
    torch.save(Payload(marker2), tmp_path / "payload.pt")
    torch.load(tmp_path / "payload.pt", weights_only=False)
    assert marker2.exists()


# -- hostile bytes x loaders -----------------------------------------------------------------


def _pickle(tmp: Path, real: bytes) -> bytes:
    return pickle.dumps(Payload(tmp / "pwned"))


def _torch_save(tmp: Path, real: bytes) -> bytes:
    torch.save(Payload(tmp / "pwned"), tmp / "payload.pt")  # zip format
    data = (tmp / "payload.pt").read_bytes()
    assert data[:2] == b"PK"
    return data


def _truncate(fraction: float | None = None, keep: int | None = None):
    def make(tmp: Path, real: bytes) -> bytes:
        n = keep if keep is not None else int(len(real) * fraction)
        assert 0 < n < len(real)
        return real[:n]

    return make


def _truncate_last_byte(tmp: Path, real: bytes) -> bytes:
    return real[:-1]


def _random(seed: int, size: int = 4096):
    def make(tmp: Path, real: bytes) -> bytes:
        return random.Random(seed).randbytes(size)

    return make


def _plausible_header_then_garbage(tmp: Path, real: bytes) -> bytes:
    body = random.Random(3).randbytes(200)
    return (100).to_bytes(8, "little") + body  # a header length that fits, then no JSON


def _empty(tmp: Path, real: bytes) -> bytes:
    return b""


def _plain_safetensors(tmp: Path, real: bytes) -> bytes:
    save_file({"w": torch.zeros(3, 2)}, str(tmp / "plain.safetensors"))
    return (tmp / "plain.safetensors").read_bytes()


def _plain_safetensors_of_real_tensors(tmp: Path, real: bytes) -> bytes:
    """The real file's tensors, re-saved without our metadata (no meta, no checksum)."""
    (tmp / "src.safetensors").write_bytes(real)
    from safetensors.torch import load_file

    save_file(load_file(str(tmp / "src.safetensors")), str(tmp / "plain.safetensors"))
    return (tmp / "plain.safetensors").read_bytes()


def _metadata_without_checksum(tmp: Path, real: bytes) -> bytes:
    save_file({"w": torch.zeros(3)}, str(tmp / "nosum.safetensors"), metadata={"meta": "{}"})
    return (tmp / "nosum.safetensors").read_bytes()


def _flip_data_byte(tmp: Path, real: bytes) -> bytes:
    header = int.from_bytes(real[:8], "little")
    start = 8 + header  # the tensor data follow the header
    i = start + (len(real) - start) // 2
    return real[:i] + bytes([real[i] ^ 0x01]) + real[i + 1 :]


def _flip_last_byte(tmp: Path, real: bytes) -> bytes:
    return real[:-1] + bytes([real[-1] ^ 0x80])


def _edit_meta_in_header(tmp: Path, real: bytes) -> bytes:
    """Change one digit inside our JSON metadata, keeping the header valid and its length."""
    header_len = int.from_bytes(real[:8], "little")
    header = json.loads(real[8 : 8 + header_len])
    meta = header["__metadata__"]["meta"]
    key = '\\"format_version\\": '  # as it appears, escaped, inside the header text
    text = real[8 : 8 + header_len].decode()
    i = text.index(key) + len(key)
    digit = text[i]
    assert digit.isdigit() and json.loads(meta)["format_version"] == int(digit)
    text = text[:i] + str((int(digit) + 1) % 10) + text[i + 1 :]
    return real[:8] + text.encode() + real[8 + header_len :]


HOSTILE: dict[str, tuple[Callable[[Path, bytes], bytes], str]] = {
    # name: (make(tmp, real file bytes) -> hostile bytes, what the message must say)
    "a-pickle": (_pickle, "not a checkpoint written by diffusion"),
    "b-torch-save-zip": (_torch_save, "not a checkpoint written by diffusion"),
    "c-truncated-to-4-bytes": (_truncate(keep=4), "not a checkpoint written by diffusion"),
    "c-truncated-to-8-bytes": (_truncate(keep=8), "not a checkpoint written by diffusion"),
    "c-truncated-in-header": (_truncate(keep=40), "not a checkpoint written by diffusion"),
    "c-truncated-at-half": (_truncate(fraction=0.5), "not a checkpoint written by diffusion"),
    "c-truncated-at-90pct": (_truncate(fraction=0.9), "not a checkpoint written by diffusion"),
    "c-truncated-last-byte": (_truncate_last_byte, "not a checkpoint written by diffusion"),
    "d-random-bytes-1": (_random(1), "not a checkpoint written by diffusion"),
    "d-random-bytes-2": (_random(2, 10), "not a checkpoint written by diffusion"),
    "d-header-length-then-garbage": (
        _plausible_header_then_garbage,
        "not a checkpoint written by diffusion",
    ),
    "e-empty": (_empty, "not a checkpoint written by diffusion"),
    "f-plain-safetensors": (_plain_safetensors, "__metadata__"),
    "f-plain-safetensors-real-tensors": (_plain_safetensors_of_real_tensors, "__metadata__"),
    "f-metadata-without-checksum": (_metadata_without_checksum, "sha256"),
    "g-flipped-data-byte": (_flip_data_byte, "checksum"),
    "g-flipped-last-byte": (_flip_last_byte, "checksum"),
    "g-edited-metadata": (_edit_meta_in_header, "checksum"),
}


def _place_anywhere(copy: Path, data: bytes) -> Path:
    path = copy.parent / "hostile.safetensors"
    path.write_bytes(data)
    return path


def _place_model(copy: Path, data: bytes) -> Path:
    path = copy / "model.safetensors"
    path.write_bytes(data)
    return path


def _place_checkpoint(copy: Path, data: bytes) -> Path:
    path = latest_checkpoint(copy)
    path.write_bytes(data)
    return path


LOADERS = {
    # name: (which real file the hostile bytes derive from, place, load)
    "read_tensor_file[model]": ("model", _place_anywhere, lambda copy, p: read_tensor_file(p)),
    "read_tensor_file[checkpoint]": (
        "checkpoint",
        _place_anywhere,
        lambda copy, p: read_tensor_file(p),
    ),
    "load_model": ("model", _place_model, lambda copy, p: load_model(copy)),
    "load_checkpoint": ("checkpoint", _place_checkpoint, lambda copy, p: load_checkpoint(p)),
}


def _real_bytes(copy: Path, kind: str) -> bytes:
    path = copy / "model.safetensors" if kind == "model" else latest_checkpoint(copy)
    return path.read_bytes()


@pytest.mark.parametrize("loader", list(LOADERS))
@pytest.mark.parametrize("hostile", list(HOSTILE))
def test_hostile_file_is_refused_with_one_line(hostile, loader, run_copy, tmp_path):
    make, expected = HOSTILE[hostile]
    kind, place, load = LOADERS[loader]
    work = tmp_path / "work"
    work.mkdir()
    data = make(work, _real_bytes(run_copy, kind))
    path = place(run_copy, data)

    with pytest.raises(CheckpointError) as info:
        load(run_copy, path)

    message = one_line(info.value)
    assert expected in message, message
    assert path.name in message, message
    assert not (work / "pwned").exists(), "a pickle was unpickled"


def test_the_untouched_files_load(run_copy):
    """The control for every case above: the same copies, unharmed, load fine."""
    read_tensor_file(run_copy / "model.safetensors")
    assert load_model(run_copy).dim == 2
    assert load_checkpoint(latest_checkpoint(run_copy)).step == 60


# -- (h) valid files of the wrong shape ------------------------------------------------------


def _model_file(copy: Path, *, dim: int = 2, meta_dim: int | None = None, **changes) -> None:
    """Write model.safetensors for a model built with `changes` to the run's config."""
    config, _ = read_run_config(copy)
    other = TrainConfig.from_dict({**config.to_dict(), **changes})
    tensors = {f"model.{k}": v for k, v in build_model(other, dim).state_dict().items()}
    tensors["normalizer.shift"] = torch.zeros(dim)
    tensors["normalizer.scale"] = torch.ones(dim)
    meta = {"kind": "model", "format_version": 2, "dim": dim if meta_dim is None else meta_dim}
    write_tensor_file(copy / "model.safetensors", tensors, meta)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(dict(width=32), "does not match its config", id="other-width"),
        pytest.param(dict(depth=2), "does not match its config", id="other-depth"),
        pytest.param(dict(dim=3, meta_dim=2), "does not match its config", id="other-data-dim"),
        pytest.param(dict(dim=3), "not this run's model", id="meta-says-other-dim"),
    ],
)
def test_model_file_of_another_architecture_is_refused(run_copy, build, expected):
    _model_file(run_copy, **build)
    read_tensor_file(run_copy / "model.safetensors")  # the file itself is intact
    with pytest.raises(CheckpointError) as info:
        load_model(run_copy)
    message = one_line(info.value)
    assert expected in message and "model.safetensors" in message, message


def test_model_file_with_wrong_normaliser_shape_is_refused(run_copy):
    tensors, meta = read_tensor_file(run_copy / "model.safetensors")
    tensors["normalizer.scale"] = torch.ones(3)
    write_tensor_file(run_copy / "model.safetensors", tensors, meta)
    with pytest.raises(CheckpointError, match="does not match its config") as info:
        load_model(run_copy)
    one_line(info.value)


def test_checkpoint_of_another_architecture_is_refused(run_copy):
    config, dim = read_run_config(run_copy)
    path = latest_checkpoint(run_copy)
    state = load_checkpoint(path)
    wider_config = TrainConfig.from_dict({**config.to_dict(), "width": 32})
    wide = {k: v.detach() for k, v in build_model(wider_config, dim).state_dict().items()}
    state.model = {k: v.clone() for k, v in wide.items()}
    state.ema = {k: v.clone() for k, v in wide.items()}
    write_tensor_file(path, *state_to_file(state))
    reloaded = load_checkpoint(path)  # a valid file: the mismatch is found on loading it
    with pytest.raises(CheckpointError, match="does not fit this model") as info:
        Trainer(config).load_state(reloaded)
    one_line(info.value)


# -- (i) a checkpoint with one entry removed, re-written with a valid checksum --------------


def _refuse_checkpoint(path: Path, config: TrainConfig) -> str:
    """Load `path` and hand it to a Trainer; return the one-line refusal."""
    with pytest.raises(CheckpointError) as info:
        state = load_checkpoint(path)
        Trainer(config).load_state(state)
    return one_line(info.value)


@pytest.mark.parametrize(
    "remove",
    [
        "rng",
        "losses",
        "snapshot.0",
        "optimizer.0.exp_avg",
        "optimizer.3.exp_avg_sq",
        "optimizer.5.step",
        "model.input.weight",
        "ema.output.2.bias",
        "optimizer.0.*",
    ],
)
def test_checkpoint_missing_one_entry_is_refused(run_copy, remove):
    config, _ = read_run_config(run_copy)
    path = latest_checkpoint(run_copy)
    tensors, meta = read_tensor_file(path)
    prefix = remove.removesuffix("*")
    gone = [k for k in tensors if (k.startswith(prefix) if remove.endswith("*") else k == remove)]
    assert gone, f"the checkpoint has no {remove}"
    for key in gone:
        del tensors[key]
    write_tensor_file(path, tensors, meta)
    read_tensor_file(path)  # the checksum is valid: refusing is the loader's job
    message = _refuse_checkpoint(path, config)
    assert "checkpoint" in message, message


def test_checkpoint_with_wrong_rng_dtype_is_refused(run_copy):
    config, _ = read_run_config(run_copy)
    path = latest_checkpoint(run_copy)
    tensors, meta = read_tensor_file(path)
    tensors["rng"] = tensors["rng"].to(torch.float32)
    write_tensor_file(path, tensors, meta)
    assert "wrong dtypes" in _refuse_checkpoint(path, config)


def test_the_untouched_checkpoint_resumes(run_copy):
    """The control for the checkpoint cases: unharmed, it loads into a Trainer."""
    config, _ = read_run_config(run_copy)
    trainer = Trainer(config)
    trainer.load_state(load_checkpoint(latest_checkpoint(run_copy)))
    assert trainer.step == 60


# -- (j) config.json -------------------------------------------------------------------------


def _edit_meta(key: str, value):
    def edit(text: str) -> str:
        meta = json.loads(text)
        meta[key] = value
        return json.dumps(meta)

    return edit


def _edit_config(key: str, value):
    def edit(text: str) -> str:
        meta = json.loads(text)
        meta["config"][key] = value
        return json.dumps(meta)

    return edit


CONFIG_EDITS = {
    "not-json": (lambda text: "{not json", "config.json"),
    "truncated-json": (lambda text: text[: len(text) // 2], "config.json"),
    "json-list": (lambda text: "[1, 2]", "config.json"),
    "json-null": (lambda text: "null", "config.json"),
    "unknown-config-key": (_edit_config("surprise", 1), "surprise"),
    "bad-config-value": (_edit_config("width", "wide"), "width"),
    "format-version-1": (_edit_meta("format_version", 1), "format version 1"),
    "no-format-version": (lambda t: json.dumps({"dim": 2}), "format_version"),
    "dim-zero": (_edit_meta("dim", 0), "dim"),
    "config-not-a-table": (_edit_meta("config", [1, 2]), "config.json"),
}
CONFIG_XFAIL: dict[str, str] = {}  # known gaps, as strict xfails (none at present)


def _config_param(name: str):
    marks = ()
    if name in CONFIG_XFAIL:
        marks = pytest.mark.xfail(strict=True, reason=CONFIG_XFAIL[name])
    return pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", [_config_param(n) for n in CONFIG_EDITS])
def test_bad_config_json_is_refused_by_load_model(run_copy, name):
    edit, expected = CONFIG_EDITS[name]
    path = run_copy / "config.json"
    path.write_text(edit(path.read_text()))
    with pytest.raises(CheckpointError) as info:
        load_model(run_copy)
    message = one_line(info.value)
    assert expected in message, message


@pytest.fixture
def no_compute(monkeypatch):
    forbid_compute(monkeypatch)


@pytest.mark.parametrize("name", [_config_param(n) for n in CONFIG_EDITS])
def test_bad_config_json_is_refused_by_resume(run_copy, name, capsys, no_compute):
    edit, expected = CONFIG_EDITS[name]
    path = run_copy / "config.json"
    path.write_text(edit(path.read_text()))
    code = main(["train", "--resume", str(run_copy), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (code, out, err)
    assert len(err.splitlines()) == 1 and err.startswith("diffusion: error: "), err
    assert expected in err, err


# -- the command line ------------------------------------------------------------------------


def test_sample_refuses_a_pickled_model(run_copy, tmp_path, capsys, no_compute):
    marker, out = tmp_path / "pwned", tmp_path / "x.npy"
    (run_copy / "model.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    code = main(["sample", "--run", str(run_copy), "--n", "5", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "model.safetensors" in err, err
    assert stdout == ""
    assert not marker.exists() and not out.exists()


def test_resume_refuses_a_pickled_checkpoint(run_copy, tmp_path, capsys, no_compute):
    marker = tmp_path / "pwned"
    torch.save(Payload(marker), latest_checkpoint(run_copy))
    code = main(["train", "--resume", str(run_copy), "--train-steps", "80", "--quiet"])
    stdout, err = capsys.readouterr()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "step-00000060.safetensors" in err, err
    assert stdout == ""
    assert not marker.exists()


# -- no unpickling anywhere in the package ---------------------------------------------------

FORBIDDEN = ("torch.load(", "pickle.load", "pickle.loads", "allow_pickle=True")


def _unpickles(line: str) -> bool:
    return any(bad in line.replace(" ", "") for bad in FORBIDDEN)


def test_the_scan_catches_each_spelling():
    for line in ("x = torch.load(f)", "pickle.loads(b)", "np.load(p, allow_pickle = True)"):
        assert _unpickles(line), line
    assert not _unpickles("np.load(path, allow_pickle=False)")


def test_the_package_never_calls_an_unpickler():
    files = sorted(SRC.rglob("*.py"))
    names = {p.relative_to(SRC).as_posix() for p in files}
    assert {"io/tensorfile.py", "io/checkpoints.py", "io/runs.py", "data/files.py"} <= names
    offenders = [
        f"{p.relative_to(SRC)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if _unpickles(line)
    ]
    assert not offenders, "\n".join(offenders)
