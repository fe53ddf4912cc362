"""`diffusion nll` and `diffusion diagnose` through `main`: known answers where there are
some (the exact model's likelihood is the mixture's, whose entropy is known), the files and
figures `diagnose` promises, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from cli_helpers import run_cli
from PIL import Image

from diffusion.cli import main
from diffusion.workflows import diagnose as diagnose_module

FAST = ["--width", "16", "--depth", "1", "--batch-size", "64", "--n-train", "500",
        "--snapshot-every", "1000", "--snapshot-samples", "50", "--quiet"]  # fmt: skip
NLL_LINE = re.compile(r"^nll: -?\d+\.\d+ ± \d+\.\d+ nats per point$")
PICTURES = ("error_by_time.png", "nfe_curve.png", "memorisation.png", "density.png", "field.gif")
# `gaussians`: 8 components N(m_k, 0.1^2 I) on the unit circle, 7.7 std apart, so the
# entropy is that of one component plus log 8, up to overlaps of order exp(-7)
GAUSSIANS_ENTROPY = math.log(8) + math.log(2 * math.pi * math.e * 0.1**2)


def train(path, *args: str) -> None:
    code = main(["train", "--out", str(path), *FAST, *args])
    assert code == 0


def assert_one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("diffusion: error: ")
    assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """Barely trained runs: edm on gaussians (30 steps), moons (no closed form), poisson,
    and flow matching with the optimal-transport coupling."""
    root = tmp_path_factory.mktemp("nll_runs")
    train(root / "edm", "--dataset", "gaussians", "--process", "edm", "--train-steps", "30",
          "--eval-samples", "500")  # fmt: skip
    # 60 training points: the training-set reference costs O(points) per evaluation
    train(root / "moons", "--dataset", "moons", "--process", "vp", "--train-steps", "10",
          "--eval-samples", "100", "--sample-steps", "4", "--n-train", "60")  # fmt: skip
    train(root / "poisson", "--dataset", "gaussians", "--process", "poisson", "--train-steps", "5",
          "--eval-samples", "100", "--sample-steps", "4")  # fmt: skip
    train(root / "flow_ot", "--dataset", "gaussians", "--coupling", "ot", "--train-steps", "5",
          "--eval-samples", "100", "--sample-steps", "4")  # fmt: skip
    return {name: str(root / name) for name in ("edm", "moons", "poisson", "flow_ot")}


# --- nll ------------------------------------------------------------------------------------

ORACLE_VP = ["--oracle", "--dataset", "gaussians", "--process", "vp"]


def test_nll_of_the_oracle_is_the_exact_nll(capsys):
    code, out, err = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 4, out
    assert NLL_LINE.match(lines[0]), lines[0]
    nll = float(lines[0].split()[1])
    assert lines[1] == f"bits/dim: {nll / (2 * math.log(2)):.4f}"
    match = re.match(r"^exact: (-?\d+\.\d+) ± (\d+\.\d+) nats per point "
                     r"\(model - exact: ([-+]\d+\.\d+) ± (\d+\.\d+)\)$", lines[2])  # fmt: skip
    assert match, lines[2]
    exact, exact_se, difference, _ = map(float, match.groups())
    # The ODE (rtol 1e-5) and its start at noise 1e-3 cost ~1e-5 nats: nothing near the
    # 0.3 nats a missing log-Jacobian of the standardisation or of alpha(t0) would leave.
    assert abs(difference) < 2e-3
    assert abs(nll - exact) < 2e-3
    assert abs(exact - GAUSSIANS_ENTROPY) < 4 * exact_se  # E[-log p] is the entropy
    assert lines[3].startswith("(200 points of gaussians, exact divergence, rtol 1e-05")


def test_nll_json_agrees_with_the_text_and_the_seed(capsys):
    code, out, err = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert {"nll", "stderr", "bits_per_dim", "exact_nll", "difference"} <= set(report)
    assert (report["n"], report["dim"], report["divergence"]) == (200, 2, "exact")
    assert report["bits_per_dim"] == pytest.approx(report["nll"] / (2 * math.log(2)))
    assert report["difference"] == pytest.approx(report["nll"] - report["exact_nll"], abs=1e-9)
    assert abs(report["difference"]) < 2e-3 and report["stderr"] > 0
    _, text, _ = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200")
    assert text.splitlines()[0] == (
        f"nll: {report['nll']:.4f} ± {report['stderr']:.4f} nats per point"
    )
    _, again, _ = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200", "--json")
    _, other, _ = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200", "--json", "--seed", "1")
    assert json.loads(again) == report
    assert json.loads(other)["exact_nll"] != report["exact_nll"]  # another data draw


def test_nll_hutchinson_is_unbiased(capsys):
    code, out, err = run_cli(capsys, "nll", *ORACLE_VP, "--n", "200", "--json",
                             "--divergence", "hutchinson")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["divergence"] == "hutchinson"
    # one Rademacher probe per point: noisier than the exact trace, but centred on it
    assert report["difference_stderr"] > 1e-3
    assert abs(report["difference"]) < 4 * report["difference_stderr"]


def test_nll_of_a_run_and_of_its_oracle(capsys, runs):
    code, out, err = run_cli(capsys, "nll", "--run", runs["edm"], "--n", "100", "--json")
    assert code == 0, err
    report = json.loads(out)
    # Gibbs: E_p[-log q] >= E_p[-log p]; 30 training steps leave the network far off
    assert report["difference"] > 3 * report["difference_stderr"]
    # the oracle in the run's coordinates: the same data, the exact likelihood
    code, out, err = run_cli(capsys, "nll", "--run", runs["edm"], "--oracle", "--n", "100")
    assert code == 0, err
    lines = out.splitlines()
    assert NLL_LINE.match(lines[0]) and lines[2].startswith("exact: ")
    assert abs(float(lines[0].split()[1]) - report["exact_nll"]) < 2e-3


def test_nll_of_a_run_without_mixture_prints_no_exact_line(capsys, runs):
    code, out, err = run_cli(capsys, "nll", "--run", runs["moons"], "--n", "20")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3 and NLL_LINE.match(lines[0]), out
    assert not any(line.startswith("exact") for line in lines)
    assert lines[2].startswith("(20 points of moons")
    _, out, _ = run_cli(capsys, "nll", "--run", runs["moons"], "--n", "20", "--json")
    assert "exact_nll" not in json.loads(out)


NLL_BAD = [
    (["--n", "0"], "expected a positive integer"),
    (["--n", "1000001"], "at most 1_000_000"),
    (["--divergence", "bogus"], "invalid choice"),
    (["--rtol", "0"], "expected a positive finite number"),
    (["--atol", "nan"], "expected a positive finite number"),
    (["--seed", "-1"], "expected an integer in"),
]


@pytest.mark.parametrize(("extra", "fragment"), NLL_BAD)
def test_nll_bad_options_exit_2(capsys, extra, fragment):
    code, out, err = run_cli(capsys, "nll", *ORACLE_VP, *extra)
    assert_one_line_error(code, out, err, fragment)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--oracle", "--dataset", "moons"], "no closed form"),
        (["--oracle", "--dataset", "gaussians", "--process", "poisson"], "Gaussian marginals"),
        (["--oracle", "--dataset", "nosuchset"], "unknown dataset"),
        ([], "give --run DIR"),
        (["--dataset", "gaussians"], "--oracle --dataset D"),
        (["--run", "{missing}"], "{missing}"),
        (["--run", "{poisson}"], "nll needs a Gaussian path"),
        (["--run", "{poisson}", "--oracle"], "Gaussian marginals"),
        (["--run", "{edm}", "--oracle", "--dataset", "gaussians"], "come from the run"),
    ],
)
def test_nll_bad_models_exit_2(capsys, tmp_path, runs, args, fragment):
    names = {**runs, "missing": str(tmp_path / "no_such_run")}
    args = [a.format(**names) for a in args]
    code, out, err = run_cli(capsys, "nll", *args, "--n", "5")
    assert_one_line_error(code, out, err, fragment.format(**names))


# --- diagnose -------------------------------------------------------------------------------


def test_diagnose_writes_pictures_and_json(capsys, tmp_path, runs):
    out_dir = tmp_path / "new" / "diag"  # parents created
    code, out, err = run_cli(capsys, "diagnose", "--run", runs["edm"], "--n", "300",
                             "--quiet", "--out", str(out_dir))  # fmt: skip
    assert code == 0, err
    assert err == ""  # --quiet: no progress bar
    for name in PICTURES:
        with Image.open(out_dir / name) as image:
            assert image.format == ("GIF" if name.endswith(".gif") else "PNG")
            assert image.width > 100 and image.height > 100
    with Image.open(out_dir / "field.gif") as gif:
        assert gif.n_frames == len(diagnose_module.FIELD_NOISE)
    report = json.loads((out_dir / "diagnostics.json").read_text())
    assert {"error_by_time", "nfe_curve", "prior_mismatch", "memorisation"} <= set(report)
    assert (report["run_dataset"], report["process"]) == ("gaussians", "edm")
    assert report["reference"] == "exact (mixture)"
    errors = report["error_by_time"]
    assert {len(errors[k]) for k in ("t", "log_snr", "model_loss", "reference_loss")} == {24}
    excess = [m - r for m, r in zip(errors["model_loss"], errors["reference_loss"], strict=True)]
    assert errors["worst_excess_loss"] == max(excess)
    assert errors["worst_t"] == errors["t"][excess.index(max(excess))]
    curve = report["nfe_curve"]
    assert curve["steps"] == list(diagnose_module.CURVE_STEPS)
    assert curve["sampler"] == "deis" and curve["nfe"] == curve["steps"]  # edm's default
    assert curve["reference"][-1] < 1.6  # the exact score at 64 DEIS-3 steps: the data floor
    prior = report["prior_mismatch"]
    assert prior["n"] == 300 and prior["upper_bound"] < 1e-3  # edm: sigma_max = 80
    assert prior["kl"] <= prior["upper_bound"] + 4 * prior["stderr"]
    memo = report["memorisation"]
    want = memo["median_sample_distance"] / memo["median_fresh_distance"]
    assert memo["median_ratio"] == pytest.approx(want)
    assert report["density"]["grid"] == 40 and len(report["density"]["limits"]) == 2
    assert set(report["seconds"]) == {"error by time", "quality vs NFE", "prior mismatch",
                                      "memorisation", "density", "field"}  # fmt: skip
    lines = out.splitlines()
    assert lines[0] == "reference: exact (mixture)"
    assert lines[1].startswith("largest excess loss at t = ")
    assert lines[2].startswith("SW ratio by NFE (model / exact): 2: ")  # deis: 1 per step
    assert lines[3].startswith("KL(q_1 || prior): ")
    assert lines[4].startswith("memorisation: ")
    assert lines[-1] == f"wrote {out_dir}"


@pytest.fixture(scope="module")
def moons_diagnosis(runs) -> dict:
    """`diagnose` of the moons run into its default folder (RUN/diagnostics): the JSON."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(diagnose_module, "CURVE_STEPS", (2, 8))  # keep the NFE curve short
        code = main(["diagnose", "--run", runs["moons"], "--n", "100", "--quiet"])
    assert code == 0
    return json.loads((Path(runs["moons"]) / "diagnostics" / "diagnostics.json").read_text())


def test_diagnose_default_out_and_training_set_reference(runs, moons_diagnosis):
    out_dir = Path(runs["moons"]) / "diagnostics"
    report = moons_diagnosis
    assert report["reference"] == "exact (training set)"
    assert report["run_dataset"] == "moons" and report["process"] == "vp"
    assert report["nfe_curve"]["steps"] == [2, 8] and report["nfe_curve"]["nfe"] == [2, 8]
    for name in PICTURES:
        with Image.open(out_dir / name) as image:
            image.verify()


def test_diagnose_prior_mismatch_uses_n_points(moons_diagnosis):
    assert moons_diagnosis["prior_mismatch"]["n"] == 100


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--run", "{missing}"], "{missing}"),
        (["--run", "{poisson}"], "diagnose needs a Gaussian path"),
        (["--run", "{edm}", "--out", "{file}"], "is a file"),
        (["--run", "{edm}", "--n", "0"], "expected a positive integer"),
        (["--run", "{edm}", "--n", "100001"], "at most 100_000"),
        (["--run", "{edm}", "--seed", "x"], "expected an integer in"),
        (["--n", "10"], "required: --run"),
    ],
)
def test_diagnose_bad_input_exits_2_and_writes_nothing(capsys, tmp_path, runs, args, fragment):
    file = tmp_path / "a_file"
    file.write_text("keep me")
    names = {**runs, "missing": str(tmp_path / "no_such_run"), "file": str(file)}
    before = {p: sorted(p.rglob("*")) for p in (tmp_path, *map(Path, runs.values()))}
    code, out, err = run_cli(capsys, "diagnose", *[a.format(**names) for a in args])
    assert_one_line_error(code, out, err, fragment.format(**names))
    assert file.read_text() == "keep me"
    assert {p: sorted(p.rglob("*")) for p in before} == before


def test_an_ot_coupled_run_refuses_noise_samplers_but_gives_its_nll(capsys, tmp_path, runs):
    """Its network learned only the ODE: `sample` refuses the samplers that need the score,
    before writing anything; the probability-flow likelihood needs only the ODE."""
    out = tmp_path / "x.npy"
    for extra in (["--sampler", "ancestral"], ["--sampler", "ddim", "--eta", "1"]):
        code, stdout, err = run_cli(capsys, "sample", "--run", runs["flow_ot"], "--n", "10",
                                    "--out", str(out), *extra)  # fmt: skip
        assert_one_line_error(code, stdout, err, "needs the score of the Gaussian path")
    assert not out.exists()
    code, stdout, err = run_cli(capsys, "sample", "--run", runs["flow_ot"], "--n", "10",
                                "--out", str(out), "--sampler", "euler")  # fmt: skip
    assert code == 0 and out.exists(), err
    code, stdout, err = run_cli(capsys, "nll", "--run", runs["flow_ot"], "--n", "50")
    assert code == 0, err
    assert NLL_LINE.match(stdout.splitlines()[0]), stdout
