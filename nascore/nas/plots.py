"""Pictures of a search (``nascore runs plot``): progress per trial and over time, and the Pareto front.

    history.png  one row per objective: its value for every trained trial against the trial number (left) and
                 against wall time since the search began (right), with the best-so-far line; pruned trials (at
                 their last reported value) and failed or interrupted ones (a mark on the axis) shown apart
    pareto.png   runs with several objectives: every trained trial and the Pareto front on the first two
    proxy.png    runs with a warm start: the first objective of each trained trial against its zero-cost proxy
                 score, and the scored-only candidates (never trained) as marks along the proxy axis

Reads the study only (safe while a search runs); the PNGs are written atomically with matplotlib's Agg renderer,
without pyplot, so no global backend or figure state is touched.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from nascore.io.atomic import atomic_write_bytes
from nascore.errors import RunError
from nascore.nas.rundir import RunDir

_FAILED_KINDS = ("failed", "interrupted")
_COLOURS = {"complete": "#1f77b4", "best": "#d62728", "pruned": "#9a9a9a", "failed": "#ff7f0e",
            "front": "#d62728"}


def _value(trial: Any, index: int, objective: str) -> float | None:
    """The trial's value of objective ``index``: its final value, or for a pruned trial the last one it reported."""
    import optuna

    if trial.state == optuna.trial.TrialState.COMPLETE and trial.values is not None:
        return float(trial.values[index])
    if objective == "val_acc" and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    attrs = trial.user_attrs
    if isinstance(attrs.get(objective), (int, float)):
        return float(attrs[objective])
    history = attrs.get("history")
    if isinstance(history, list) and history and isinstance(history[-1], dict) \
            and isinstance(history[-1].get(objective), (int, float)):
        return float(history[-1][objective])
    return None


def _label(objective: str, direction: str, proxy: str | None = None) -> str:
    """The axis label; with a proxy evaluator (``proxy``) val_acc is that proxy's score and says so."""
    name = f"{proxy} score (val_acc)" if proxy and objective == "val_acc" else objective
    return f"{name} ({'higher' if direction == 'maximize' else 'lower'} is better)"


def _scale(ax: Any, values: list[float], axis: str = "y") -> None:
    """Log scale for positive values spanning a factor of more than 30 (params, MACs)."""
    positive = [v for v in values if v > 0]
    if len(positive) == len(values) and positive and max(positive) / min(positive) > 30:
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def _time_unit(seconds: list[float]) -> tuple[float, str]:
    top = max(seconds, default=0.0)
    if top >= 2 * 3600:
        return 3600.0, "hours"
    if top >= 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def _save(fig: Any, path: Path) -> Path:
    """Render to PNG and write it atomically (temporary file, fsync, rename), readable as a normal file is."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _best_so_far(points: list[tuple[float, float]], maximize: bool) -> tuple[list[float], list[float]]:
    xs, ys, best = [], [], None
    for x, y in sorted(points):
        if best is None or (y > best if maximize else y < best):
            best = y
        xs.append(x)
        ys.append(best)
    return xs, ys


def _history_figure(trials: list[Any], objectives: list[str], directions: list[str], start: Any, title: str,
                    proxy: str | None = None):
    import optuna
    from matplotlib.figure import Figure

    rows = len(objectives)
    fig = Figure(figsize=(12, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False)
    ended = [t for t in trials if t.datetime_complete is not None]
    elapsed = {t.number: (t.datetime_complete - start).total_seconds() for t in ended}
    unit, unit_name = _time_unit(list(elapsed.values()))
    for row, (objective, direction) in enumerate(zip(objectives, directions)):
        maximize = direction == "maximize"
        complete, pruned, failed = [], [], []
        for t in trials:
            kind = t.user_attrs.get("kind")
            if kind in _FAILED_KINDS or (kind == "trained" and t.state == optuna.trial.TrialState.FAIL):
                failed.append(t)
            elif kind == "trained" and t.state == optuna.trial.TrialState.COMPLETE:
                complete.append(t)
            elif kind == "trained" and t.state == optuna.trial.TrialState.PRUNED:
                pruned.append(t)
        values = {t.number: _value(t, row, objective) for t in complete + pruned}
        shown = [v for v in values.values() if v is not None and math.isfinite(v)]
        for col, (ax, x_of, xlabel) in enumerate((
                (axes[row][0], lambda t: float(t.number), "trial"),
                (axes[row][1], lambda t: elapsed.get(t.number, math.nan) / unit,
                 f"wall time since the search began ({unit_name})"))):
            def xy(group: list[Any]) -> tuple[list[float], list[float]]:
                pts = [(x_of(t), values[t.number]) for t in group]
                pts = [(x, y) for x, y in pts if y is not None and math.isfinite(x) and math.isfinite(y)]
                return [p[0] for p in pts], [p[1] for p in pts]

            cx, cy = xy(complete)
            ax.scatter(cx, cy, s=28, color=_COLOURS["complete"], zorder=3, label=f"trained ({len(cx)})")
            px, py = xy(pruned)
            if px:
                ax.scatter(px, py, s=28, marker="v", facecolors="none", edgecolors=_COLOURS["pruned"], zorder=2,
                           label=f"pruned, last value ({len(px)})")
            bx, by = _best_so_far(list(zip(cx, cy)), maximize)
            if bx:
                right = max([bx[-1], *cx, *px])
                ax.step(bx + [right], by + [by[-1]], where="post", color=_COLOURS["best"], linewidth=1.6,
                        zorder=4, label="best so far")
            fx = [x_of(t) for t in failed]
            fx = [x for x in fx if math.isfinite(x)]
            if fx:  # no value: a mark on the bottom edge, at the trial's place
                ax.scatter(fx, [0.02] * len(fx), transform=ax.get_xaxis_transform(), marker="x", s=36,
                           color=_COLOURS["failed"], zorder=5, label=f"failed ({len(fx)})")
                ax.update_datalim([(x, shown[0] if shown else 0.0) for x in fx], updatex=True, updatey=False)
                ax.autoscale_view()
            ax.set_xlabel(xlabel)
            ax.set_ylabel(_label(objective, direction, proxy))
            ax.grid(True, alpha=0.3)
            if shown:
                _scale(ax, shown)
            if col == 0 and cx + px:
                ax.xaxis.get_major_locator().set_params(integer=True)
            if row == 0 and col == 0:
                ax.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    return fig


def _pareto_figure(trials: list[Any], front: list[Any], objectives: list[str], directions: list[str], title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    pts = [(float(t.values[0]), float(t.values[1])) for t in trials]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=28, color=_COLOURS["complete"], alpha=0.7, zorder=2,
               label=f"trained trials ({len(pts)})")
    fpts = sorted((float(t.values[0]), float(t.values[1]), t.number) for t in front)
    if fpts:
        ax.plot([p[0] for p in fpts], [p[1] for p in fpts], linestyle="--", color=_COLOURS["front"],
                linewidth=1.2, alpha=0.8, zorder=3)
        ax.scatter([p[0] for p in fpts], [p[1] for p in fpts], s=60, color=_COLOURS["front"], edgecolors="black",
                   zorder=4, label=f"Pareto front ({len(fpts)})")
        for x, y, number in fpts:
            ax.annotate(f"#{number}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(_label(objectives[0], directions[0]))
    ax.set_ylabel(_label(objectives[1], directions[1]))
    if pts:
        _scale(ax, [p[0] for p in pts], "x")
        _scale(ax, [p[1] for p in pts], "y")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    shown = f"{objectives[0]} vs {objectives[1]}"
    if len(objectives) > 2:
        shown += f" (front over all {len(objectives)} objectives)"
    ax.set_title(f"{title}: {shown}")
    return fig


def _proxy_figure(trials: list[Any], objective: str, direction: str, proxy: str, title: str):
    """The first objective of the trained trials against their warm-start proxy score; scored-only candidates as
    marks on the proxy axis."""
    import optuna
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 5.5), layout="constrained")
    ax = fig.subplots()
    trained = [(float(t.user_attrs["proxy"]), _value(t, 0, objective), t.number) for t in trials
               if t.user_attrs.get("kind") == "trained" and isinstance(t.user_attrs.get("proxy"), (int, float))
               and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    trained = [p for p in trained if p[1] is not None and math.isfinite(p[1])]
    ax.scatter([p[0] for p in trained], [p[1] for p in trained], s=36, color=_COLOURS["complete"], zorder=3,
               label=f"trained ({len(trained)})")
    for x, y, number in trained:
        ax.annotate(f"#{number}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    scored = [float(t.user_attrs["proxy"]) for t in trials if t.user_attrs.get("kind") == "scored"
              and isinstance(t.user_attrs.get("proxy"), (int, float))]
    if scored:
        ax.scatter(scored, [0.02] * len(scored), transform=ax.get_xaxis_transform(), marker="|", s=120,
                   color=_COLOURS["pruned"], zorder=2, label=f"scored only, not trained ({len(scored)})")
        ax.update_datalim([(x, trained[0][1] if trained else 0.0) for x in scored], updatex=True, updatey=False)
        ax.autoscale_view()
    ax.set_xlabel(f"{proxy} score at initialisation (higher ranks first)")
    ax.set_ylabel(_label(objective, direction))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{title}: warm start with {proxy}")
    return fig


def plot_run(run_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``history.png`` (and ``pareto.png`` for several objectives) into ``out_dir`` (default RUN/plots).

    Returns the paths written. A run with no trained trial to show is a RunError ("nothing to plot yet").
    """
    import optuna

    run = RunDir.open(run_dir)
    config = run.config()
    try:
        study = run.load_study(config)
    except RunError as err:
        raise RunError(f"nothing to plot yet ({err})", where=str(run.path)) from None
    objectives, directions = list(config.objectives), list(config.directions)
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state != optuna.trial.TrialState.RUNNING and t.state != optuna.trial.TrialState.WAITING]
    valued = [t for t in trials if t.user_attrs.get("kind") == "trained"
              and t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    if not valued:
        raise RunError("nothing to plot yet: no trial has been trained to the end or pruned", where=str(run.path))
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    start = min(starts) if starts else min(t.datetime_complete for t in valued)
    out = Path(out_dir) if out_dir is not None else run.path / "plots"
    out.mkdir(parents=True, exist_ok=True)

    evaluated_by = {t.user_attrs.get("proxy_name") for t in valued} - {None}
    proxy = config.evaluator if evaluated_by == {config.evaluator} else None   # a proxy search: val_acc is its score
    written = [_save(_history_figure(trials, objectives, directions, start, run.name, proxy), out / "history.png")]
    if config.warm_start_proxy and proxy is None:
        written.append(_save(_proxy_figure(trials, objectives[0], directions[0], config.warm_start_proxy, run.name),
                             out / "proxy.png"))
    if len(objectives) > 1:
        complete = [t for t in valued if t.state == optuna.trial.TrialState.COMPLETE and t.values is not None
                    and all(math.isfinite(v) for v in t.values[:2])]
        # duplicates carry their original's values, so the front over all trials holds the originals too
        front = [t for t in study.best_trials if t.user_attrs.get("kind") == "trained"]
        written.append(_save(_pareto_figure(complete, front, objectives, directions, run.name), out / "pareto.png"))
    return written


__all__ = ["plot_run"]
