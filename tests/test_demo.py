"""`python -m diffusion.ddpm.main` still runs the original demo through `diffusion train`."""

from __future__ import annotations

import diffusion.ddpm.main as demo


def test_demo_trains_ddpm_on_the_swiss_roll(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(demo, "main", lambda argv: calls.append(argv) or 0)
    monkeypatch.setattr(demo, "RUN_DIR", tmp_path / "ddpm-demo")
    (tmp_path / "ddpm-demo").mkdir()
    (tmp_path / "ddpm-demo" / "old.txt").write_text("stale")
    assert demo.demo() == 0
    (argv,) = calls
    assert argv[:5] == ["train", "--dataset", "swissroll", "--process", "ddpm"]
    assert argv[-1] == str(tmp_path / "ddpm-demo")
    assert not (tmp_path / "ddpm-demo").exists(), "the demo starts from a clean directory"
