"""benchmarks/perf.py's pieces that turn measurements into figures: the time-to-quality of a
curve, the fewest NFE reaching a bar, and the Markdown tables the README quotes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "perfkit"))

from common import Curve
from quality import smallest_nfe
from report import TABLES, markdown


def test_time_to_a_bar_is_the_first_evaluation_at_or_under_it():
    curve = Curve([(100, 1.0, 3.0), (200, 2.0, 1.4), (300, 3.0, 1.6), (400, 4.0, 1.1)])
    assert curve.time_to(1.5) == 2.0  # not the later 4.0, though the curve went back up
    assert curve.time_to(1.1) == 4.0  # "at or under"
    assert curve.time_to(1.0) is None


def test_smallest_nfe_per_sampler_and_bar():
    rows = [
        {"sampler": "heun", "steps": 5, "nfe": 9, "ratio": 2.0},
        {"sampler": "heun", "steps": 10, "nfe": 19, "ratio": 1.2},
        {"sampler": "heun", "steps": 20, "nfe": 39, "ratio": 1.05},
        {"sampler": "euler", "steps": 5, "nfe": 5, "ratio": 1.5},
        {"sampler": "pc", "refused": "no"},
    ]
    assert smallest_nfe(rows) == {
        "heun": {"1.3": 19, "1.1": 39},
        "euler": {"1.3": None, "1.1": None},
    }


def test_markdown_renders_the_saved_sections_with_their_figures():
    results = {
        "machine": {
            "cpu": "X",
            "cores": 2,
            "torch_threads": 2,
            "python": "3.11",
            "torch": "2.13",
            "cuda": None,
        },
        "peer": {
            "date": "2026-11-30",
            "result": {
                "bar": 1.5,
                "speedup": 4.56,
                "speedup_is_lower_bound": True,
                "ours": {"time_to": 7.04, "curve": [[100, 7.04, 1.43]], "train_s": 18.7},
                "peer": {
                    "recipe": "peer recipe",
                    "time_to": None,
                    "trained_s": 32.0,
                    "best_sampler": "dpm-solver++ 20",
                    "best": 3.0,
                },
            },
        },
        "throughput": {
            "date": "2026-11-30",
            "quick": True,
            "result": [{"batch_size": 512, "ms_per_step": 6.3, "samples_per_s": 81276}],
        },
    }
    text = markdown(results)
    assert "| ours (default) | 7.0 s | 1.43 | 18.7 s |" in text
    assert "| peer recipe; best sampler dpm-solver++ 20 | not reached | 3.00 | 32.0 s |" in text
    assert ">= 4.6x" in text  # a lower bound, since the peer never reached the bar
    assert "| 512 | 6.30 | 81,276 |" in text and "--quick" in text
    assert text.index("Against the common recipe") < text.index("Training throughput")
    assert "no GPU" in text
    assert markdown(results, ["throughput"]).count("###") == 1


@pytest.mark.parametrize("lower_bound", [True, False])
def test_the_speedup_says_when_it_is_a_lower_bound(lower_bound):
    result = {
        "bar": 1.5,
        "speedup": 3.0,
        "speedup_is_lower_bound": lower_bound,
        "ours": {"time_to": 2.0, "curve": [[1, 2.0, 1.4]], "train_s": 5.0},
        "peer": {"recipe": "r", "time_to": 6.0, "trained_s": 9.0, "best_sampler": "s", "best": 1.2},
    }
    text = markdown({"peer": {"date": "d", "result": result}})
    assert (">= 3.0x" if lower_bound else "up to <= 1.5: 3.0x") in text


def test_settings_table_gives_both_sampling_paths():
    section = {
        "threads": [{"threads": 1, "ms_per_step": 6.15}, {"threads": 2, "ms_per_step": 4.41}],
        "shared_time": {"n": 10_000, "sampler": "heun", "steps": 25, "shared_s": 0.61,
                        "per_row_s": 0.97},
    }  # fmt: skip
    text = "\n".join(TABLES["settings"](section))
    assert "| 2 thread(s) | 4.41 |" in text
    assert "10,000 points (heun, 25 steps): 0.61 s with the sampler's time embedded" in text
    assert "0.97 s with it embedded per row" in text


def test_throughput_table_gives_both_couplings_and_the_refused_batch():
    from report import throughput_table

    rows = [
        {"batch_size": 512, "ms_per_step": 5.0, "samples_per_s": 102400,
         "ms_per_step_ot": 7.5, "samples_per_s_ot": 68267},
        {"batch_size": 16384, "ms_per_step": 90.0, "samples_per_s": 182044},
    ]  # fmt: skip
    lines = throughput_table(rows)
    assert "OT coupling" in lines[0]
    assert lines[2] == "| 512 | 5.00 | 102,400 | 7.50 | 68,267 |"
    assert lines[3] == "| 16384 | 90.00 | 182,044 | (refused: plan too large) | - |"
