"""`diffusion nll` and `diffusion diagnose`: likelihoods and diagnostics.

What a model allows is read from its process's attributes (`gaussian`, `discrete_steps`),
never from the process's name.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffusion.cli.common import (
    UsageError,
    check_writable,
    load_source,
    run_dataset,
)

MAX_NLL = 10**6  # points `diffusion nll` integrates (each one an ODE solve)
MAX_DIAGNOSE = 10**5  # points per measurement of `diffusion diagnose`


def cmd_nll(args: argparse.Namespace) -> int:
    import torch

    from diffusion.measure.likelihood import ddpm_bound, exact_nll, pf_ode_nll, standard_error
    from diffusion.streams import stream
    from diffusion.utils import default_device

    if args.n > MAX_NLL:
        raise UsageError(f"--n must be at most {MAX_NLL:_} for nll, got {args.n:_}")
    trained = load_source(args)
    if not trained.process.gaussian:
        raise UsageError(f"nll needs a Gaussian path; {trained.config.process} is not one")
    dataset = run_dataset(trained, "nll measures the likelihood of the run's data set")
    device = default_device()
    x = dataset.sample(args.n, stream(args.seed, "nll.data"))  # (n, d) fresh data
    if dataset.quantised:
        # Uniform dequantisation (Theis, van den Oord & Bethge 2016, Sec. 3.1): pixels on
        # integer levels plus U(-1/2, 1/2) noise; the density of the result bounds the
        # probability of the discrete image from below (bins of width 1 in data units).
        noise = torch.rand(x.shape, generator=stream(args.seed, "nll.dequantise"))
        x = x + noise.to(x) - 0.5
    generator = stream(args.seed, "nll.probes", device)
    if args.method == "bound":
        if trained.process.discrete_steps is None:
            raise UsageError(f"--method bound is the variational bound of a discrete-time "
                             f"process (ddpm); {trained.config.process} has continuous time "
                             "(use --method ode)")  # fmt: skip
        result = ddpm_bound(trained, x, generator=generator, device=device)
    else:
        result = pf_ode_nll(trained, x, divergence=args.divergence, rtol=args.rtol,
                            atol=args.atol, generator=generator, device=device)  # fmt: skip
    report = {
        "nll": result.mean, "stderr": result.stderr, "bits_per_dim": result.bits_per_dim,
        "n": args.n, "dim": result.dim, "divergence": result.divergence,
        "rtol": result.rtol, "atol": result.atol, "evaluations": result.evaluations,
        "dequantised": dataset.quantised,
    }  # fmt: skip
    if dataset.mixture is not None:
        exact = exact_nll(dataset.mixture, x)
        difference = result.nll - exact
        report["exact_nll"] = float(exact.mean())
        report["exact_stderr"] = standard_error(exact)
        report["difference"] = float(difference.mean())
        report["difference_stderr"] = standard_error(difference)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"nll: {result.mean:.4f} ± {result.stderr:.4f} nats per point")
    print(f"bits/dim: {result.bits_per_dim:.4f}")
    if dataset.quantised:
        print("(pixels dequantised with U(-1/2, 1/2) noise: a bound on the discrete images' "
              "bits per dimension, in bins of width 1 of the data's units)")  # fmt: skip
    if "exact_nll" in report:
        print(f"exact: {report['exact_nll']:.4f} ± {report['exact_stderr']:.4f} nats per point "
              f"(model - exact: {report['difference']:+.5f} ± {report['difference_stderr']:.5f})")  # fmt: skip
    how = (f"{result.divergence}" if args.method == "bound" else
           f"{result.divergence} divergence, rtol {result.rtol:g}, atol {result.atol:g}")  # fmt: skip
    print(f"({args.n} points of {trained.config.dataset}, {how}, "
          f"{result.evaluations} evaluations)")  # fmt: skip
    return 0


def cmd_diagnose(args: argparse.Namespace) -> int:
    from diffusion.io.runs import load_model
    from diffusion.workflows.diagnose import diagnose

    if args.n > MAX_DIAGNOSE:
        raise UsageError(f"--n must be at most {MAX_DIAGNOSE:_} for diagnose, got {args.n:_}")
    trained = load_model(args.run)
    if not trained.process.gaussian:
        raise UsageError(f"diagnose needs a Gaussian path; {trained.config.process} is not one")
    out = Path(args.out) if args.out else Path(args.run) / "diagnostics"
    check_writable(out, "--out", directory=True)
    report = diagnose(trained, out, n=args.n, seed=args.seed, progress=not args.quiet)
    errors, prior = report["error_by_time"], report["prior_mismatch"]
    print(f"reference: {report['reference']}")
    print(f"largest excess loss at t = {errors['worst_t']:.2f} (log SNR "
          f"{errors['worst_log_snr']:.1f}): {errors['worst_excess_loss']:.4f}")  # fmt: skip
    curve = report["nfe_curve"]
    print("SW ratio by NFE (model / exact): " + ", ".join(
        f"{nfe}: {m:.2f}/{r:.2f}" for nfe, m, r in
        zip(curve["nfe"], curve["model"], curve["reference"], strict=True)))  # fmt: skip
    print(f"KL(q_1 || prior): {prior['kl']:.2e} ± {prior['stderr']:.1e} nats "
          f"(upper bound {prior['upper_bound']:.2e})")  # fmt: skip
    print(f"memorisation: median nearest-training-point distance, samples / fresh data = "
          f"{report['memorisation']['median_ratio']:.2f}")  # fmt: skip
    print(f"wrote {out}")
    return 0
