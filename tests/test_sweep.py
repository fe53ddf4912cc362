"""benchmarks/sweep.py's pieces: reading KEY=VALUE settings and the paired summary."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from sweep import main, paired_summary, parse_settings


def test_settings_are_read_as_json_where_they_parse():
    settings = parse_settings(
        ["depth=6", "lr=5e-3", "train-times=low-noise", "zero_terminal_snr=true"]
    )
    assert settings == {"depth": 6, "lr": 0.005, "train_times": "low-noise",
                        "zero_terminal_snr": True}  # fmt: skip
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["depth"])


def test_paired_summary_known_answer():
    base = [1.20, 1.10, 1.30, 1.00]
    changed = [1.10, 1.15, 1.20, 1.00]  # changes -0.10, +0.05, -0.10, 0
    s = paired_summary(base, changed)
    assert s["seeds"] == 4 and s["better"] == 2 and s["worse"] == 1  # a tie is neither
    assert s["mean_change"] == pytest.approx(-0.0375)
    # standard deviation of (-0.1, 0.05, -0.1, 0) is 0.075, over sqrt(4)
    assert s["standard_error"] == pytest.approx(0.0375)
    assert s["base_median"] == pytest.approx(1.15) and s["changed_median"] == pytest.approx(1.125)
    assert math.isnan(paired_summary([1.0], [1.1])["standard_error"])
    with pytest.raises(ValueError):
        paired_summary([1.0, 1.1], [1.0])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--change", "nosuch=1"], "unknown config key 'nosuch'"),
        (["--change", "process=edm", "train_times=uniform"], "train_times applies to"),
        (["--change", "depth=6", "--seeds", "1"], "--seeds >= 2"),
    ],
)
def test_bad_settings_exit_2_before_training(capsys, monkeypatch, args, message):
    monkeypatch.setattr(sys, "argv", ["sweep.py", *args])
    assert main() == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
