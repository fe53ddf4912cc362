"""Quality sections: the default recipe against the bar, time-to-quality per family, and
quality against network evaluations (NFE) per sampler, learned and exact."""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

from common import Scorer, model_draw, train_with_curve

from diffusion.data import get_dataset
from diffusion.processes import PROCESSES
from diffusion.samplers import SAMPLERS, sample
from diffusion.training.config import TrainConfig
from diffusion.training.loop import Trainer
from diffusion.workflows.exact import exact_model

MIXTURE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mixture.json"
FEW_STEPS = (10, 25)  # the bar's DPM-Solver++ settings on the default model
NFE_STEPS = (5, 10, 15, 20, 25, 50, 100)
BARS = (1.3, 1.1)
MAX_NFE = 1100  # annealed Langevin costs 100 evaluations per noise level: skip beyond this
LANGEVIN_STEPS = 100


DEFAULT_SETS = 10  # sample sets per score of the default recipe: one set varies by +-25%


def train_and_score(config: TrainConfig, sets: int, few_steps: tuple[int, ...]) -> dict:
    """Train `config` and score its EMA model on `sets` sample sets: training seconds, and
    the SW ratio with the recipe's own sampler ("default") and with DPM-Solver++ at each of
    `few_steps` ("dpm-solver++ K")."""
    trainer = Trainer(config)
    trainer.run(progress=False)
    scorer = Scorer(trainer.dataset, sets=sets)
    own = model_draw(trainer, trainer.ema, config.sampler, config.sample_steps, config.sample_grid)
    row = {"train_s": trainer.seconds, "default": scorer(own)}
    for steps in few_steps:
        draw = model_draw(trainer, trainer.ema, "dpm-solver++", steps, config.sample_grid)
        row[f"dpm-solver++ {steps}"] = scorer(draw)
    return row


def default_recipe(seeds: int, log) -> dict:
    """`diffusion train` with every default, once per seed: training time and SW ratio with
    the default sampler and with DPM-Solver++ at 10 and 25 steps (median of DEFAULT_SETS
    sample sets each), and fresh data scored the same way (what a perfect model gets)."""
    rows = []
    for seed in range(seeds):
        config = TrainConfig(seed=seed).validate()
        row = {"seed": seed, **train_and_score(config, DEFAULT_SETS, FEW_STEPS)}
        row["train_s"] = round(row["train_s"], 2)
        rows.append(row)
        log(
            f"  seed {seed}: {row['train_s']:.1f} s, SW ratio {row['default']:.2f} "
            f"({config.sampler} {config.sample_steps}), DPM-Solver++ 10/25: "
            f"{row['dpm-solver++ 10']:.2f}/{row['dpm-solver++ 25']:.2f}"
        )
    config = TrainConfig().validate()
    median = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "seed"}
    dataset = get_dataset(config.dataset)
    control = Scorer(dataset, sets=DEFAULT_SETS)(dataset.sample)
    log(f"  control: fresh data scored the same way: {control:.2f}")
    return {
        "control": control,
        "sets": DEFAULT_SETS,
        "config": {
            k: getattr(config, k)
            for k in (
                "process",
                "width",
                "depth",
                "steps",
                "batch_size",
                "lr",
                "sampler",
                "sample_steps",
            )
        },
        "rows": rows,
        "median": median,
    }


def time_to_quality(datasets: list[str], processes: list[str], bar: float, log) -> list[dict]:
    """Each family's default recipe, scored at 10 points of training (seed 0, one run each)."""
    rows = []
    for name in datasets:
        dataset = get_dataset(name)
        scorer = Scorer(dataset)
        for process in processes:
            config = TrainConfig(process=process, dataset=name).validate()
            trainer, curve = train_with_curve(config, scorer, dataset=dataset)
            row = {
                "dataset": name,
                "process": process,
                "sampler": config.sampler,
                "sample_steps": config.sample_steps,
                "train_s": round(trainer.seconds, 2),
                "final": curve.points[-1][2],
                "best": min(r for _, _, r in curve.points),
                "time_to": {str(b): curve.time_to(b) for b in (1.5, 1.3, bar)},
                "curve": curve.to_json(),
            }
            rows.append(row)
            reach = row["time_to"][str(bar)]
            log(
                f"  {name:>12} {process:>8}: final {row['final']:.2f} after "
                f"{row['train_s']:.1f} s; <= {bar} at "
                + (f"{reach:.1f} s" if reach is not None else "never")
            )
    return rows


def _nfe_rows(sample, scorer, log, label: str) -> list[dict]:
    """Every sampler at every NFE_STEPS setting; `sample(n, sampler, steps, generator)`."""
    rows = []
    for sampler in SAMPLERS:
        for steps in NFE_STEPS:
            if sampler == "langevin" and steps * LANGEVIN_STEPS > MAX_NFE:
                continue
            nfe = []

            def draw(n, generator, sampler=sampler, steps=steps, nfe=nfe):
                result = sample(n, sampler, steps, generator)
                nfe.append(result.nfe)
                return result.x

            try:
                ratio = scorer(draw)
            except ValueError as exc:  # a sampler the process refuses
                rows.append({"sampler": sampler, "refused": str(exc)})
                log(f"  {label} {sampler:>15}: refused ({exc})")
                break
            rows.append({"sampler": sampler, "steps": steps, "nfe": nfe[0], "ratio": ratio})
        mine = [r for r in rows if r["sampler"] == sampler and "nfe" in r]
        if mine:
            log(
                f"  {label} {sampler:>15}: "
                + "  ".join(f"{r['nfe']}:{r['ratio']:.2f}" for r in mine)
            )
    return rows


def smallest_nfe(rows: list[dict]) -> dict[str, dict[str, int | None]]:
    """Per sampler, the fewest NFE whose ratio reached each bar."""
    best = {}
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        mine = [r for r in rows if r["sampler"] == sampler and "nfe" in r]
        if mine:
            best[sampler] = {
                str(b): min((r["nfe"] for r in mine if r["ratio"] <= b), default=None) for b in BARS
            }
    return best


def quality_vs_nfe(log) -> dict:
    """The default model (seed 0) on the swiss roll, and the exact score of a 2-D mixture
    under the same process: the learned model's curve beside pure discretisation error."""
    config = TrainConfig().validate()
    trainer = Trainer(config)
    trainer.run(progress=False)
    scorer = Scorer(trainer.dataset)

    def learned(n, sampler, steps, generator):
        result = sample(
            trainer.process.denoiser(trainer.ema),
            (n, trainer.dim),
            sampler=sampler,
            steps=steps,
            generator=generator,
        )
        return dataclasses.replace(result, x=trainer.normalizer.denormalize(result.x))

    model_rows = _nfe_rows(learned, scorer, log, "model ")
    mixture = get_dataset(str(MIXTURE))
    oracle = exact_model(mixture.mixture, TrainConfig(process=config.process, dataset=str(MIXTURE)))
    mixture_scorer = Scorer(mixture)

    def exact(n, sampler, steps, generator):
        return oracle.sample(n, sampler=sampler, steps=steps, generator=generator)

    oracle_rows = _nfe_rows(exact, mixture_scorer, log, "oracle")
    return {
        "process": config.process,
        "model": {
            "dataset": config.dataset,
            "rows": model_rows,
            "smallest_nfe": smallest_nfe(model_rows),
        },
        "oracle": {
            "dataset": MIXTURE.name,
            "rows": oracle_rows,
            "smallest_nfe": smallest_nfe(oracle_rows),
        },
    }


#: ncsn is left out of the time-to-quality runs by default: its annealed Langevin sampler costs
#: 1,000 NFE per sample, which makes scoring it ten times during training take longer than
#: the rest together. Its end-of-training figures are in benchmarks/families.json.
TTQ_PROCESSES = [p for p in PROCESSES if p != "ncsn"]
