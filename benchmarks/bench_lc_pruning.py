"""Learning-curve extrapolation as a pruner: does it save training on the benchmark? (issue 12, point 3)

Replays the recorded per-epoch validation curves of a stand-alone ground truth (``bench_standalone``: every
architecture trained with three seeds, the curve of each epoch kept) through Optuna pruners, one trial per
architecture in a random order, as a search would report them epoch by epoch: a pruned trial costs the epochs it
trained, a completed one the whole budget. Per pruner: the epochs trained against no pruning, and the regret, the
final val_acc of the best trial that was not pruned below the best final val_acc of all (what pruning lost).

Pruners: nascore's own (``make_pruner``: Hyperband, ASHA, median) and a learning-curve extrapolation pruner in the
manner of Domhan et al. (IJCAI 2015), reduced to its point estimate: from epoch ``--lc-from`` on, the curve so far
is fitted by least squares with one of two of their curve families, ``pow3`` (``c - a t^-alpha``) or ``weibull``
(S-shaped: ``a - (a - b) exp(-(k t)^d)``), and the trial is pruned when the prediction at the last epoch is below
the best completed trial's final val_acc. Each fit's error against the recorded final value is reported too. No training runs; the
figures are exact replays of recorded curves.

    .venv/bin/python -m benchmarks.bench_lc_pruning --standalone benchmarks/results/standalone_mbconv_scaled_digits_6ep.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "lc_pruning_scaled_digits.json"


def pow3(t: np.ndarray, c: float, a: float, alpha: float) -> np.ndarray:
    return c - a * np.power(t, -alpha)


def weibull(t: np.ndarray, a: float, b: float, k: float, d: float) -> np.ndarray:
    return a - (a - b) * np.exp(-np.power(k * t, d))


# Two of Domhan et al.'s curve families: pow3 (concave, 3 parameters) and Weibull (S-shaped, 4: it can follow a
# warm-up's slow start). Per family: the function, its start point from the curve, and the parameter bounds.
FAMILIES = {
    "pow3": (pow3, lambda y: (max(y), 0.5, 1.0), ([0.0, 0.0, 0.01], [1.0, 10.0, 5.0])),
    "weibull": (weibull, lambda y: (max(y), 0.1, 0.3, 2.0), ([0.0, 0.0, 1e-3, 0.1], [1.0, 1.0, 10.0, 10.0])),
}


def extrapolate(curve: list[float], last: int, family: str = "pow3") -> float:
    """The least-squares fit of ``family`` to ``curve`` (epochs 1, 2, ...), evaluated at epoch ``last``."""
    from scipy.optimize import curve_fit

    fn, start, bounds = FAMILIES[family]
    t = np.arange(1, len(curve) + 1, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            fitted, _ = curve_fit(fn, t, np.asarray(curve), p0=start(curve), bounds=bounds, maxfev=20000)
        except RuntimeError:          # no fit: never prune on it
            return 1.0
    return float(fn(np.asarray([float(last)]), *fitted)[0])


class CurveExtrapolationPruner(optuna.pruners.BasePruner):
    """Prune when the extrapolation of the curve so far ends below the best completed trial."""

    def __init__(self, last: int, start: int = 3, family: str = "pow3"):
        self.last, self.start, self.family = last, start, family

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        steps = sorted(trial.intermediate_values)
        if len(steps) < self.start or steps[-1] >= self.last:
            return False
        done = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
        if not done:
            return False
        return extrapolate([trial.intermediate_values[s] for s in steps], self.last, self.family) < max(done)


def replay(curves: list[list[float]], pruner: optuna.pruners.BasePruner, seed: int) -> dict[str, float]:
    """One search over ``curves`` in a random order; epochs trained and the completed trials' best final value."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=f"replay-{seed}", direction="maximize", pruner=pruner,
                                sampler=optuna.samplers.RandomSampler(seed=seed))
    order = list(range(len(curves)))
    random.Random(seed).shuffle(order)
    epochs = 0
    for i in order:
        trial = study.ask()
        curve = curves[i]
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            epochs += 1
            if step < len(curve) and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, curve[-1])
    return {"epochs": epochs, "best": study.best_value}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.bench_standalone import load_standalone
    from nascore.nas.config import SearchConfig
    from nascore.nas.recovery import make_pruner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--standalone", required=True, help="a bench_standalone result with per-epoch curves")
    parser.add_argument("--orders", type=int, default=20, help="random trial orders per seed's curves")
    parser.add_argument("--lc-from", default="pow3:3,pow3:4,pow3:5,weibull:4,weibull:5",
                        help="FAMILY:EPOCH, the first epoch the extrapolation may prune at; one pruner each")
    parser.add_argument("-o", "--out", default=str(OUT))
    args = parser.parse_args(argv)
    archs = load_standalone(args.standalone)
    seeds = [[a["val_history"] for a in archs]] + [[a["repeats"][r]["val_history"] for a in archs]
                                                   for r in range(len(archs[0]["repeats"]))]
    budget = len(seeds[0][0])
    pruners = {name: (lambda name=name: make_pruner(SearchConfig(pruner=name, epochs=budget)))
               for name in ("none", "hyperband", "asha", "median")}
    for item in args.lc_from.split(","):
        family, start = item.split(":")
        pruners[f"lc_{family}_from_{start}"] = (lambda start=int(start), family=family:
                                                CurveExtrapolationPruner(budget, start, family))
    rows, curves_all = {}, [c for curves in seeds for c in curves]
    fit_error = {}
    for item in args.lc_from.split(","):
        family, start = item.split(":")
        errors = [100 * (extrapolate(c[:int(start)], budget, family) - c[-1]) for c in curves_all]
        fit_error[item] = {"bias_points": statistics.fmean(errors),
                           "mean_abs_points": statistics.fmean(abs(e) for e in errors),
                           "under_fraction": statistics.fmean(e < 0 for e in errors)}
        print(f"{family} from epoch {start}: final val_acc predicted {fit_error[item]['bias_points']:+.1f} points off "
              f"on average (mean |error| {fit_error[item]['mean_abs_points']:.1f}) over {len(curves_all)} curves")
    for name, make in pruners.items():
        runs = [replay(curves, make(), seed) for curves in seeds for seed in range(args.orders)]
        ideal = [max(c[-1] for c in curves) for curves in seeds for _ in range(args.orders)]
        regret = [100 * (i - r["best"]) for i, r in zip(ideal, runs)]
        full = len(archs) * budget
        rows[name] = {"epochs_mean": statistics.fmean(r["epochs"] for r in runs), "epochs_full": full,
                      "saved_fraction": 1 - statistics.fmean(r["epochs"] for r in runs) / full,
                      "regret_points_mean": statistics.fmean(regret), "regret_points_max": max(regret),
                      "best_kept_fraction": statistics.fmean(x == 0 for x in regret)}
        r = rows[name]
        print(f"{name:>24}: epochs {r['epochs_mean']:6.1f} of {full} (saved {100 * r['saved_fraction']:4.1f}%), "
              f"regret {r['regret_points_mean']:.2f} points (max {r['regret_points_max']:.2f}), best kept in "
              f"{100 * r['best_kept_fraction']:.0f}% of {len(runs)} searches")
    doc = {"command": " ".join([".venv/bin/python -m benchmarks.bench_lc_pruning", *(argv or sys.argv[1:])]),
           "standalone": args.standalone, "budget_epochs": budget, "architectures": len(archs),
           "searches_per_pruner": len(seeds) * args.orders, "pruners": rows, "extrapolation_error": fit_error}
    from nascore.io.atomic import atomic_write_text

    atomic_write_text(Path(args.out), json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
