"""End-to-end architecture search with a real local Ray, a real Optuna SQLite study and real training on digits;
and a search SIGKILLed mid-run, then resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest

from nascore import Graph
from nascore.errors import DataError, NascoreError, RunError
from nascore.nas.rundir import RunDir
from nascore.nas.driver import search
from tests.conftest import ROOT, SPACES

pytestmark = pytest.mark.slow
FAST = {"batch_size": 32, "lr": 0.1}


def _states(run_path):
    study = RunDir.open(run_path).load_study()
    return study, study.get_trials(deepcopy=False)


def test_end_to_end_search_beats_chance_and_best_graph_builds(local_ray, tmp_path):
    lines = []
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=6, epochs=3, workers=2, train=FAST,
                 pruner="none", progress=lines.append)
    study, trials = _states(run)
    trained = [t for t in trials if t.user_attrs.get("kind") == "trained"]
    assert len(trained) == 6
    complete = [t for t in trained if t.state == optuna.trial.TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.values[0])
    assert best.values[0] > 0.8                     # chance is 0.1 on ten digits
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["best"][0]["trial"] == best.number
    graph = Graph.load(run / "best" / "graph.yaml")
    model = graph.build()
    from safetensors.torch import load_file

    model.load_state_dict(load_file(run / "best" / "model.safetensors"))
    assert any(line.startswith("finished: 6/6 trained") for line in lines), lines[-1]
    assert len({t.user_attrs["hash"] for t in trained}) == 6   # nothing trained twice


def test_constraints_reject_before_training_and_failures_are_recorded(local_ray, tmp_path):
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=3, epochs=1, workers=2, strategy="random",
                 constraints={"max_params": 60_000}, train={"lr": 1e30}, progress=None)
    study, trials = _states(run)
    rejected = [t for t in trials if t.user_attrs.get("kind") == "rejected"]
    failed = [t for t in trials if t.user_attrs.get("kind") == "failed"]
    assert all(t.user_attrs["params"] > 60_000 and "max_params" in t.user_attrs["reason"] for t in rejected)
    assert not any(RunDir.open(run).trial_dir(t.number).exists() for t in rejected)   # never trained
    assert len(failed) == 3 and all("non-finite loss" in t.user_attrs["reason"] for t in failed)
    assert json.loads((run / "summary.json").read_text())["counts"]["failed"] == 3


def test_multi_objective_keeps_the_pareto_set(local_ray, tmp_path):
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=4, epochs=1, workers=2, strategy="nsga2",
                 objectives=["val_acc", "params"], train=FAST, progress=None)
    summary = json.loads((run / "summary.json").read_text())
    pareto = summary["pareto"]
    assert pareto and (run / "pareto").is_dir()
    for a in pareto:   # nobody in the set is dominated by another member
        assert not any(b["values"][0] >= a["values"][0] and b["values"][1] <= a["values"][1] and b != a
                       for b in pareto)


def test_nb201_duplicates_are_evaluated_once(local_ray, tmp_path):
    run = search(SPACES / "nb201.yaml", runs_root=tmp_path, trials=3, epochs=1, workers=1, strategy="grid",
                 progress=None)
    study, trials = _states(run)
    trained = {t.user_attrs["hash"] for t in trials if t.user_attrs.get("kind") == "trained"}
    dupes = [t for t in trials if t.user_attrs.get("kind") == "duplicate"]
    assert len(trained) == 3
    for d in dupes:
        assert d.user_attrs["hash"] in trained and d.values == trials[d.user_attrs["duplicate_of"]].values


def test_bad_inputs_are_clear_errors(local_ray, tmp_path):
    with pytest.raises(DataError, match="cifar"):
        search(SPACES / "mbconv.yaml", runs_root=tmp_path, data="cifar10", data_root=str(tmp_path / "none"),
               progress=None)
    with pytest.raises(NascoreError, match="objectives"):
        search(SPACES / "mbconv.yaml", runs_root=tmp_path, objectives=["accuracy"], progress=None)
    with pytest.raises(RunError, match="not a nascore run directory"):
        search(resume=tmp_path, progress=None)


def _trained_done(run_dir) -> int:
    try:
        counts = json.loads((run_dir / "summary.json").read_text())["counts"]
    except (OSError, ValueError, KeyError):
        return 0
    return counts["complete"] + counts["pruned"] + counts["failed"]


def test_sigkill_then_resume_keeps_completed_and_reruns_in_flight(local_ray, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "nascore.cli", "search", str(SPACES / "mbconv.yaml"), "--runs", str(tmp_path),
           "--trials", "6", "--epochs", "2", "--workers", "2", "--pruner", "none", "--strategy", "random"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 240
    run_dir = None
    while time.time() < deadline:
        dirs = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
        run_dir = dirs[0] if dirs else None
        if run_dir is not None and _trained_done(run_dir) >= 2:
            break
        time.sleep(0.2)
    assert run_dir is not None and _trained_done(run_dir) >= 2, "the search made no progress"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study, before = _states(run_dir)
    completed_before = {t.number: t.values for t in before if t.state == optuna.trial.TrialState.COMPLETE}
    in_flight = {t.number: (t.params, t.user_attrs.get("kind")) for t in before
                 if t.state == optuna.trial.TrialState.RUNNING}

    search(resume=run_dir, progress=None)
    study, after = _states(run_dir)
    for number, values in completed_before.items():          # kept, untouched
        assert after[number].state == optuna.trial.TrialState.COMPLETE and after[number].values == values
    for number, (params, kind) in in_flight.items():         # marked interrupted; if it was training, run again
        assert after[number].user_attrs["kind"] == "interrupted"
        retry = [t for t in after if t.user_attrs.get("retry_of") == number]
        if kind == "trained":
            assert len(retry) == 1 and retry[0].params == params
        else:                                                # killed while being sampled: nothing to re-run
            assert not retry
    trained = [t for t in after if t.user_attrs.get("kind") in ("trained", "failed")]
    assert len(trained) == 6                                 # the budget, exactly
    assert not any(t.user_attrs.get("retry_of") in completed_before for t in after)   # none run twice
    assert json.loads((run_dir / "summary.json").read_text())["state"] == "finished"
