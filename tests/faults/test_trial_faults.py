"""Trials that fail: an evaluator that raises (in an epoch, or when made), a NaN loss, a (simulated) CUDA out of
memory, a Ray worker process killed mid-trial (once: retried and the retry succeeds; always: retried up to
max_retries), an evaluator returning metrics without val_acc. Each trial is recorded as failed with its reason
(user_attrs "reason"), the search finishes, and summary.json counts them.

The faulty evaluators are plugins (tests/faults/faulty_evaluators.py) that Ray workers must load too: workers
inherit the environment the driver had when it started Ray, and the session's ``local_ray`` may already be up, so
those searches run in one child process with ``NASCORE_PLUGINS`` set (one Ray start for all of them). The NaN-loss
search needs no plugin and runs in-process on ``local_ray``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import optuna
import pytest

from nascore.nas.rundir import RunDir
from tests.conftest import ROOT
from tests.faults.faulty_evaluators import OOM_MESSAGE

pytestmark = pytest.mark.slow

TINY_SPACE = """\
name: tiny
search: {data: digits, objectives: [val_acc], strategy: random, pruner: none, train: {batch_size: 64, lr: 0.05}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: {int: [4, 64]}, kernel: {choice: [1, 3]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""

# evaluator -> search overrides; every search has workers=1 so the trial order is the launch order
JOBS = {
    "raise": {"evaluator": "fault_raise", "trials": 2, "epochs": 1},
    "raise_in_make": {"evaluator": "fault_raise_in_make", "trials": 2, "epochs": 1},
    "oom": {"evaluator": "fault_oom", "trials": 2, "epochs": 1},
    "die_once": {"evaluator": "fault_die_once", "trials": 2, "epochs": 2, "max_retries": 1},
    "die_always": {"evaluator": "fault_die_always", "trials": 3, "epochs": 1, "max_retries": 1},
    "no_val_acc": {"evaluator": "fault_no_val_acc", "trials": 2, "epochs": 1},
    "nan_val_acc": {"evaluator": "fault_nan_val_acc", "trials": 2, "epochs": 1},
    # one architecture only: every trial after the first is a duplicate of the NaN one
    "nan_val_acc_duplicates": {"evaluator": "fault_nan_val_acc", "trials": 2, "epochs": 1, "space_file": "one.yaml"},
}

ONE_SPACE = TINY_SPACE.replace("name: tiny", "name: one").replace("{int: [4, 64]}", "{choice: [8]}").replace(
    "{choice: [1, 3]}", "1")

DRIVER = """
import json, sys, traceback
import ray
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024)
from nascore.nas.driver import search
root, jobs = sys.argv[1], json.loads(sys.argv[2])
results = {}
for key, overrides in jobs.items():
    lines = []
    space_file = f"{root}/{overrides.pop('space_file', 'tiny.yaml')}"
    try:
        run = search(space_file, runs_root=f"{root}/{key}", workers=1, seed=1, progress=lines.append, **overrides)
        results[key] = {"run": str(run), "lines": lines}
    except BaseException as exc:
        results[key] = {"error": "".join(traceback.format_exception(exc)), "lines": lines}
print("@@RESULTS@@" + json.dumps(results), flush=True)
ray.shutdown()
"""


@pytest.fixture(scope="module")
def fault_runs(tmp_path_factory):
    """Run every faulty-evaluator search in one child process; {job: {"run": path} | {"error": traceback}}."""
    root = tmp_path_factory.mktemp("trial_faults")
    (root / "tiny.yaml").write_text(TINY_SPACE)
    (root / "one.yaml").write_text(ONE_SPACE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NASCORE_PLUGINS="tests.faults.faulty_evaluators", NASCORE_FAULTS_MARKER=str(root / "died_once"),
               RAY_AUTH_MODE="disabled", RAY_DEDUP_LOGS="0")
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(root), json.dumps(JOBS)], env=env,
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULTS@@")), None)
    assert line is not None, f"driver failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
    results = json.loads(line[len("@@RESULTS@@"):])
    results["_marker"] = str(root / "died_once")
    return results


def _finished(results: dict, job: str):
    """The run of ``job``: it must have finished (not crashed); returns (trials, summary)."""
    outcome = results[job]
    assert "error" in outcome or "run" in outcome
    assert "error" not in outcome, f"the search crashed:\n{outcome['error']}\n" + "\n".join(outcome["lines"])
    run = RunDir.open(outcome["run"])
    summary = run.summary()
    assert summary["state"] == "finished", summary
    return run.load_study().get_trials(deepcopy=False), summary


def _budgeted(trials):
    """The trials the budget counts: trained or failed, but not one lost with its worker and queued again (its
    retry takes its place)."""
    return [t for t in trials if t.user_attrs.get("kind") in ("trained", "failed") and not t.user_attrs.get("requeued")]


@pytest.mark.parametrize("job, fragment", [
    ("raise", "ValueError: evaluator exploded on purpose"),
    ("raise_in_make", "RuntimeError: evaluator could not be made (on purpose)"),
    ("oom", "CUDA out of memory"),
])
def test_a_raising_evaluator_fails_its_trials_and_the_search_goes_on(fault_runs, job, fragment):
    trials, summary = _finished(fault_runs, job)
    budgeted = _budgeted(trials)
    assert len(budgeted) == JOBS[job]["trials"]
    for t in budgeted:
        assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["kind"] == "failed"
        assert fragment in t.user_attrs["reason"], t.user_attrs["reason"]
        assert "retry_of" not in t.user_attrs         # an exception is not a dead worker: no retry
    assert summary["counts"]["failed"] == len(budgeted) and summary["counts"]["complete"] == 0
    assert summary["best"] == []
    assert any(f"[trial {budgeted[0].number}] failed: " in line for line in fault_runs[job]["lines"])


def test_simulated_out_of_memory_is_named_as_such(fault_runs):
    trials, _ = _finished(fault_runs, "oom")
    reasons = [t.user_attrs["reason"] for t in _budgeted(trials)]
    assert all("OutOfMemoryError" in r or "out of memory" in r.lower() for r in reasons), reasons
    assert all(OOM_MESSAGE[:30] in r for r in reasons), reasons


def test_a_worker_killed_mid_trial_is_retried_once_and_the_retry_succeeds(fault_runs):
    assert os.path.exists(fault_runs["_marker"]), "the evaluator never killed its worker"
    trials, summary = _finished(fault_runs, "die_once")
    died = [t for t in trials if "worker process died" in t.user_attrs.get("reason", "")]
    assert len(died) == 1, [(t.number, t.state.name, t.user_attrs) for t in trials]
    dead = died[0]
    assert dead.state == optuna.trial.TrialState.FAIL and dead.user_attrs["kind"] == "failed"
    assert dead.user_attrs["requeued"] and dead not in _budgeted(trials)
    assert "(queued again)" in " ".join(fault_runs["die_once"]["lines"])
    retries = [t for t in trials if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1, [(t.number, t.user_attrs) for t in trials]
    retry = retries[0]
    assert retry.params == dead.params and retry.user_attrs["retries"] == 1
    assert retry.state == optuna.trial.TrialState.COMPLETE and retry.user_attrs["kind"] == "trained"
    assert len(retry.user_attrs["history"]) == JOBS["die_once"]["epochs"]
    assert len(_budgeted(trials)) == JOBS["die_once"]["trials"]     # the lost trial costs no budget: its retry ran
    assert summary["counts"]["failed"] == 1 and summary["counts"]["complete"] == JOBS["die_once"]["trials"]
    assert summary["best"][0]["trial"] == retry.number
    assert (RunDir.open(fault_runs["die_once"]["run"]).trial_dir(retry.number) / "model.safetensors").is_file()


def test_a_worker_that_always_dies_is_retried_max_retries_times_then_given_up(fault_runs):
    trials, summary = _finished(fault_runs, "die_always")
    budgeted = _budgeted(trials)
    assert len(budgeted) == JOBS["die_always"]["trials"]
    assert all(t.state == optuna.trial.TrialState.FAIL and "worker process died" in t.user_attrs["reason"]
               for t in budgeted), [t.user_attrs for t in budgeted]
    for t in budgeted:   # a retry is never retried beyond max_retries
        assert t.user_attrs.get("retries", 0) <= JOBS["die_always"]["max_retries"]
        if t.user_attrs.get("retries", 0) == JOBS["die_always"]["max_retries"]:
            assert not any(u.user_attrs.get("retry_of") == t.number for u in trials)
    originals = [t for t in trials if t.user_attrs.get("requeued")]   # lost once, queued again, not counted
    assert len(originals) == len(budgeted)
    assert all(any(t.user_attrs.get("retry_of") == first.number for t in trials) for first in originals)
    assert summary["counts"]["failed"] == len(budgeted) + len(originals)


def test_an_evaluator_returning_metrics_without_val_acc_fails_the_trial_not_the_search(fault_runs):
    """The driver reads metrics["val_acc"] itself: an evaluator plugin that forgets it raises KeyError in the
    driver, which ends the whole search instead of failing that trial."""
    trials, summary = _finished(fault_runs, "no_val_acc")
    budgeted = _budgeted(trials)
    assert len(budgeted) == JOBS["no_val_acc"]["trials"]
    assert all(t.state == optuna.trial.TrialState.FAIL and "val_acc" in t.user_attrs.get("reason", "")
               for t in budgeted), [t.user_attrs for t in budgeted]
    assert summary["counts"]["failed"] == len(budgeted)


def test_an_evaluator_reporting_nan_accuracy_fails_the_trial_with_a_reason(fault_runs):
    """Optuna turns a NaN objective into FAIL silently; nascore must say why (and must not treat the trial as
    a trained result that later duplicates copy)."""
    trials, summary = _finished(fault_runs, "nan_val_acc")
    budgeted = _budgeted(trials)
    assert len(budgeted) == JOBS["nan_val_acc"]["trials"]
    for t in budgeted:
        assert t.state == optuna.trial.TrialState.FAIL, t.state
        assert "val_acc" in t.user_attrs.get("reason", ""), t.user_attrs
    assert summary["counts"]["failed"] == len(budgeted) and summary["best"] == []


def test_a_duplicate_of_a_nan_trial_does_not_crash_the_search(fault_runs):
    """A NaN-valued trial is FAIL in Optuna but the driver has already recorded it as the owner of its
    architecture; the next identical sample copies the owner's ``values`` -- None -- and the driver crashes."""
    trials, summary = _finished(fault_runs, "nan_val_acc_duplicates")
    assert len(_budgeted(trials)) == JOBS["nan_val_acc_duplicates"]["trials"]
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in trials)


def test_nan_loss_fails_each_trial_with_its_reason(local_ray, tmp_path):
    from nascore.nas.driver import search

    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    lines: list[str] = []
    run = search(space, runs_root=tmp_path / "runs", trials=2, epochs=1, workers=2, train={"lr": 1e30},
                 progress=lines.append)
    study = RunDir.open(run).load_study()
    budgeted = _budgeted(study.get_trials(deepcopy=False))
    assert len(budgeted) == 2
    for t in budgeted:
        assert t.state == optuna.trial.TrialState.FAIL and t.user_attrs["kind"] == "failed"
        assert "TrialFailed" in t.user_attrs["reason"] and "non-finite loss" in t.user_attrs["reason"]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["counts"]["failed"] == 2
    assert lines[-1].startswith("finished: 2/2 trained") and "2 failed" in lines[-1], lines[-1]
