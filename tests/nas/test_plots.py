"""Plots of a run: a real Optuna study in a real run directory (no Ray), single and two objectives."""

from __future__ import annotations

import datetime as dt

import optuna
import pytest
from PIL import Image

from nascore.nas.config import SearchConfig
from nascore.errors import RunError
from nascore.nas.plots import plot_run
from nascore.nas.rundir import RunDir
from nascore.nas.space import SearchSpace

from tests.conftest import SPACES

T0 = dt.datetime(2024, 5, 1, 12, 0, 0)


def make_run(tmp_path, **settings) -> tuple[RunDir, optuna.Study]:
    config = SearchConfig.merge(settings)
    run = RunDir.create(tmp_path, "t", SearchSpace.load(SPACES / "mbconv.yaml"), config)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=run.name, storage=run.storage(config), directions=config.directions)
    return run, study


def add(study, start_s: float, seconds: float, state=optuna.trial.TrialState.COMPLETE, kind="trained",
        values=None, history=(), **attrs):
    trial = optuna.trial.create_trial(
        state=state, values=values if state == optuna.trial.TrialState.COMPLETE else None,
        user_attrs={"kind": kind, "history": [{"epoch": i + 1, "val_acc": v} for i, v in enumerate(history)],
                    "seconds": seconds, **attrs},
        intermediate_values={i + 1: v for i, v in enumerate(history)})
    trial.datetime_start = T0 + dt.timedelta(seconds=start_s)
    trial.datetime_complete = T0 + dt.timedelta(seconds=start_s + seconds)
    study.add_trial(trial)


def check_png(path, min_bytes=15_000):
    assert path.is_file() and path.stat().st_size > min_bytes
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 400 and im.size[1] > 300
        colours = im.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 50  # drawn, not blank


def test_single_objective_history(tmp_path):
    run, study = make_run(tmp_path, objectives=["val_acc"])
    with pytest.raises(RunError, match=r"nothing to plot yet"):
        plot_run(run.path)  # a study without trials
    # failures only: still nothing to plot
    add(study, 0, 5, optuna.trial.TrialState.FAIL, kind="failed", reason="non-finite loss")
    add(study, 1, 0.1, optuna.trial.TrialState.FAIL, kind="invalid")
    with pytest.raises(RunError, match=r"nothing to plot yet"):
        plot_run(run.path)

    accs = [0.42, 0.61, 0.55, 0.78, 0.74, 0.81, 0.66, 0.86]
    start = 5.0
    for i, acc in enumerate(accs):
        add(study, start, 30 + 7 * i, values=[acc], history=[acc * 0.6, acc * 0.9, acc])
        start += 30 + 7 * i
        if i == 3:
            add(study, start, 12, optuna.trial.TrialState.PRUNED, history=[0.2])
            add(study, start + 1, 20, optuna.trial.TrialState.FAIL, kind="interrupted")
            add(study, start + 2, 0.1, values=[acc], kind="duplicate", duplicate_of=3)
    paths = plot_run(run.path)
    assert paths == [run.path / "plots" / "history.png"]
    check_png(paths[0])
    assert not (run.path / "plots" / "pareto.png").exists()
    assert not [p for p in (run.path / "plots").iterdir() if p.name.startswith(".")]  # no temporary files

    other = tmp_path / "elsewhere"
    assert plot_run(run.path, other) == [other / "history.png"]
    check_png(other / "history.png")


def test_two_objectives_history_and_pareto(tmp_path):
    run, study = make_run(tmp_path, objectives=["val_acc", "params"], pruner="none")
    assert study.directions[1] == optuna.study.StudyDirection.MINIMIZE
    points = [(0.50, 3_000), (0.70, 12_000), (0.65, 40_000), (0.80, 60_000), (0.72, 9_000),
              (0.90, 150_000), (0.60, 2_000), (0.85, 200_000), (0.88, 90_000)]
    for i, (acc, params) in enumerate(points):
        add(study, 20.0 * i, 18, values=[acc, params], history=[acc], params=params)
    add(study, 200, 3, optuna.trial.TrialState.FAIL, kind="failed", reason="out of memory")
    add(study, 210, 0.1, values=[0.88, 90_000], kind="duplicate", duplicate_of=8)

    paths = plot_run(run.path)
    assert paths == [run.path / "plots" / "history.png", run.path / "plots" / "pareto.png"]
    for path in paths:
        check_png(path)
    front = {t.number for t in study.best_trials if t.user_attrs["kind"] == "trained"}
    dominated = {i for i, (a, p) in enumerate(points)
                 if any(b >= a and q <= p and (b, q) != (a, p) for b, q in points)}
    assert front == set(range(len(points))) - dominated == {3, 4, 5, 6, 8}


def test_not_a_run_or_no_study(tmp_path):
    with pytest.raises(RunError, match=r"no such run directory"):
        plot_run(tmp_path / "missing")
    run = RunDir.create(tmp_path, "t", SearchSpace.load(SPACES / "mbconv.yaml"), SearchConfig())
    with pytest.raises(RunError, match=r"nothing to plot yet \(.*study.db missing"):
        plot_run(run.path)
