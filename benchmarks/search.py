"""Search against the exhaustive grid: evaluations needed to reach the grid's best feasible density.

Each point of a ``search:`` space is a schedule. Its density comes from the real cost model and
its accuracy from the synthetic model below, so the whole grid costs seconds and the comparison
measures the search alone: the sampler, anchors, repeat skipping and constraints are the real
ones. An evaluation stands for one training run; the grid needs one per point. Random search
(without repeats, after the same anchors) is shown for reference.

    python benchmarks/search.py [SWEEP.yaml] [--target 0.95] [--seeds 8] [--budget N] [--json]

SWEEP.yaml is a sweep file with a ``search:`` section; its ``base`` gives the model, dataset and
epochs. Without it: a space over the small CNN (three layer groups, 180 points).

Synthetic accuracy: 0.975 minus, for each quantized layer, ``w * (0.6 * loss(format of its first
epoch) + 0.4 * loss(format of its last epoch))`` with ``loss = 0.2 * 2**(2 - M) * (1 + 0.1 *
log2(B / 64))`` for mantissa width M and block size B; ``w`` is 0.5 for the first and for the
last layer, and the middle layers share 0.2.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from hbfp_dse.cost.density import run_cost
from hbfp_dse.cost.gemms import LayerMACs
from hbfp_dse.cost.macs import count_macs
from hbfp_dse.emulation import LayerInfo
from hbfp_dse.errors import UserError
from hbfp_dse.experiments.search.points import config_from_params, layer_groups, param_choices
from hbfp_dse.experiments.search.sampler import NoRepeatSampler
from hbfp_dse.experiments.search.section import SearchSpace
from hbfp_dse.experiments.search.study import create_study, is_feasible, run_search
from hbfp_dse.experiments.sweepfile import load_sweep
from hbfp_dse.training.assembly import model_for
from hbfp_dse.training.config import TrainConfig

DEFAULT_SPACE = {
    "first": {"mantissa_bits": [4, 6, 8]},
    "last": {"mantissa_bits": [4, 6, 8]},
    "middle": {"mantissa_bits": [2, 3, 4, 6, 8], "block_size": [64, 256]},
    "boost_last_epochs": [0, 1],
}
DEFAULT_BASE = TrainConfig(epochs=4)


@dataclass
class Problem:
    """A space on a model, with everything needed to score a schedule cheaply."""

    space: SearchSpace
    base: TrainConfig
    layers: list[LayerInfo]
    macs: tuple[LayerMACs, ...]
    weights: dict[str, float]

    def density(self, config: TrainConfig) -> float:
        table = config.schedule.build().resolve(self.layers, config.epochs)
        return run_cost(self.macs, table).density_vs_fp32

    def accuracy(self, config: TrainConfig) -> float:
        table = config.schedule.build().resolve(self.layers, config.epochs)
        lost = sum(
            w * (0.6 * _loss(table[0][name]) + 0.4 * _loss(table[-1][name]))
            for name, w in self.weights.items()
        )
        return 0.975 - lost


def _loss(fmt: Any) -> float:
    block = fmt.block_size or 64  # element-wise formats: no block to share an exponent
    return 0.2 * 2.0 ** (2 - fmt.mantissa_bits) * (1 + 0.1 * math.log2(block / 64))


def load_problem(path: Path | None) -> Problem:
    if path is None:
        space, base = SearchSpace.model_validate(DEFAULT_SPACE), DEFAULT_BASE
    else:
        spec, _ = load_sweep(path)
        if spec.search is None:
            raise SystemExit(f"{path}: the sweep file has no 'search:' section")
        space, base = spec.search, spec.base
    built = model_for(base)
    names = [layer.name for layer in built.layers]
    middle = names[1:-1]
    weights = {name: 0.2 / max(len(middle), 1) for name in middle} | {names[0]: 0.5, names[-1]: 0.5}
    macs = count_macs(built.model, built.input_shape)
    return Problem(space, base, built.layers, macs, weights)


def grid_best(problem: Problem, target: float) -> tuple[float | None, int]:
    """The best feasible density over every point of the space, and the number of points."""
    groups = layer_groups(problem.space, [layer.name for layer in problem.layers])
    choices = param_choices(problem.space, groups)
    best: float | None = None
    size = 0
    for values in itertools.product(*choices.values()):
        params = dict(zip(choices, values, strict=True))
        config = config_from_params(params, problem.space, groups, problem.base)
        size += 1
        if problem.accuracy(config) >= target:
            density = problem.density(config)
            best = density if best is None else max(best, density)
    return best, size


def evaluations_to_reach(
    problem: Problem, target: float, best: float, seed: int, budget: int, random: bool
) -> dict[str, Any]:
    space = problem.space.model_copy(update={"seed": seed})
    study = create_study(None, f"bench-{seed}", space, target)
    if random:
        study.sampler = NoRepeatSampler(optuna.samplers.RandomSampler(seed=seed), seed)

    def objective(trial: optuna.Trial, config: TrainConfig) -> tuple[float, float]:
        accuracy, density = problem.accuracy(config), problem.density(config)
        if accuracy >= target and density >= best - 1e-9:
            trial.study.stop()  # reached: the rest of the budget would measure nothing
        return accuracy, density

    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # anchors outside the space
        run_search(study, space, problem.base, objective, n_trials=budget)
    evaluated = 0
    reached = None
    for trial in sorted(study.trials, key=lambda t: t.number):
        if trial.state == optuna.trial.TrialState.COMPLETE:
            evaluated += 1
            if is_feasible(trial) and trial.user_attrs["density"] >= best - 1e-9:
                reached = evaluated
                break
    return {
        "seed": seed,
        "sampler": "random" if random else space.sampler,
        "evaluations": reached,
        "trials": len(study.trials),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, nargs="?", help="a sweep file with a search section")
    parser.add_argument("--target", type=float, default=0.95, help="accuracy to hold (fraction)")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--budget", type=int, help="evaluations per search (default: grid size)")
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    try:
        problem = load_problem(args.sweep)
    except UserError as err:
        raise SystemExit(str(err)) from None
    best, size = grid_best(problem, args.target)
    if best is None:
        raise SystemExit(f"no point of the {size}-point grid reaches accuracy {args.target}")
    budget = args.budget or size
    rows = [
        evaluations_to_reach(problem, args.target, best, seed, budget, random)
        for random in (False, True)
        for seed in range(args.seeds)
    ]
    if args.json:
        print(json.dumps({"grid_points": size, "grid_best": best, "runs": rows}, indent=2))
        return
    _print(rows, size, best, budget)


def _print(rows: list[dict[str, Any]], size: int, best: float, budget: int) -> None:
    table = Table(
        title=f"evaluations to reach the grid's best feasible density {best:.2f}x "
        f"(grid: {size} points; budget {budget})"
    )
    for column in ("sampler", "seed", "evaluations", "trials", "seconds"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for r in rows:
        reached = "-" if r["evaluations"] is None else str(r["evaluations"])
        table.add_row(
            r["sampler"], str(r["seed"]), reached, str(r["trials"]), f"{r['seconds']:.1f}"
        )
    for sampler in dict.fromkeys(r["sampler"] for r in rows):
        found = [r["evaluations"] for r in rows if r["sampler"] == sampler]
        median = statistics.median(math.inf if n is None else n for n in found)
        reached = sum(n is not None for n in found)
        summary = f">{budget}" if math.isinf(median) else f"median {median:g}"
        table.add_row(sampler, "all", summary, f"{reached}/{len(found)} reached", "", style="bold")
    Console().print(table)


if __name__ == "__main__":
    main()
