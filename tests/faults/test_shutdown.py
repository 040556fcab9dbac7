"""A second Ctrl-C (or SIGTERM) while a stopping search writes its records (issue 14, the new-user probe).

The first Ctrl-C stops the search; the driver then marks the trials in flight interrupted (a training one's
parameters queued to run again) and writes summary.json, with SIGINT and SIGTERM held (nascore.nas.shutdown). A
second signal in that moment used to cut it short: no summary, trials left RUNNING. Both tests run the search in a
child process, so a signal that escapes cannot interrupt pytest itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest

from nascore.nas.rundir import RunDir
from tests.conftest import ROOT, SPACES

# In a child: the pool is a stub (no Ray), the loop asks two trials (one training, one still being sampled) and
# then receives Ctrl-C; the finalisation receives SIGINT while it marks the trials and SIGTERM + SIGINT while it
# writes the summary, each delivered (its handler run) in the middle of the work.
SECOND_SIGNALS = r'''
import json, os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)   # as under a terminal, even if started in the background
from nascore.nas import driver
from nascore.nas.pool import ActorPool
from nascore.nas.recovery import RunStudy
from nascore.nas.rundir import RunDir

ActorPool.open = lambda self: None
ActorPool.close = lambda self: None


def loop(self):
    training = self.study.ask()
    self.space.sample(training)
    training.set_user_attr("kind", "trained")
    self.study.ask()                      # a trial still being sampled: no architecture yet
    os.kill(os.getpid(), signal.SIGINT)   # the first Ctrl-C
    time.sleep(10)
    raise SystemExit("the first SIGINT was not delivered")


def signalled(signums, work):
    def wrapper(*args, **kwargs):
        for signum in signums:
            os.kill(os.getpid(), signum)
            time.sleep(0.2)               # the handler runs here, in the middle of the finalisation
        return work(*args, **kwargs)
    return wrapper


driver.Search._loop = loop
RunStudy.fail_stored = signalled([signal.SIGINT], RunStudy.fail_stored)
RunDir.write_summary = signalled([signal.SIGTERM, signal.SIGINT], RunDir.write_summary)
lines = []
try:
    driver.search(sys.argv[1], runs_root=sys.argv[2], trials=2, tensorboard=False, progress=lines.append)
    outcome = "returned"
except KeyboardInterrupt:
    outcome = "KeyboardInterrupt"
print("@@" + json.dumps({"outcome": outcome, "lines": lines,
                         "sigint_restored": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
                         "sigterm_restored": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}), flush=True)
'''


# A child's SIGINT as a terminal leaves it: a shell that starts jobs in the background (`cmd &`, nohup, some CI
# runners) sets it to ignored, and Python keeps an ignored SIGINT; Ctrl-C is what these tests send. Set in the child's
# own first line, not by ``preexec_fn``: that forks the test process, whose Ray (gRPC) threads do not survive a fork
# (the session's local Ray then hangs for every later test).
UNDER_A_TERMINAL = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                    "sys.argv[0] = 'nascore'; from nascore.cli import main; main()")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
                RAY_AUTH_MODE="disabled")


@contextmanager
def _search_child(args: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """``nascore search ARGS`` in a child process group, as under a terminal, its output in ``log``; killed with
    its group if still running when the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", UNDER_A_TERMINAL, "search", *args], env=_env(), cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _states(run: Path) -> list[optuna.trial.FrozenTrial]:
    return RunDir.open(run).load_study().get_trials(deepcopy=False)


def test_signals_during_the_finalisation_leave_a_summary_and_no_running_trial(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SECOND_SIGNALS, str(SPACES / "mbconv.yaml"), str(tmp_path / "runs")],
                          env=_env(), cwd=ROOT, capture_output=True, text=True, timeout=180)
    marker = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    assert proc.returncode == 0 and marker, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(marker[0][2:])
    assert result["outcome"] == "KeyboardInterrupt", result
    run = next((tmp_path / "runs").iterdir())
    assert result["lines"][-1] == f"interrupted: resume with `nascore search --resume {run}`", result
    assert result["sigint_restored"] and result["sigterm_restored"], result    # the handlers come back
    assert json.loads((run / "summary.json").read_text())["state"] == "interrupted"
    trials = _states(run)
    assert [t.state for t in trials[:2]] == [optuna.trial.TrialState.FAIL] * 2, trials
    assert [t.user_attrs.get("kind") for t in trials[:2]] == ["interrupted", "interrupted"]
    # the training one's parameters wait for the resume, the one being sampled had none
    assert [(t.state, t.user_attrs.get("retry_of"), t.system_attrs.get("fixed_params")) for t in trials[2:]] == [
        (optuna.trial.TrialState.WAITING, 0, trials[0].params)]


SPACE = """\
name: twice
search: {data: digits, objectives: [val_acc], strategy: random, pruner: none, train: {batch_size: 16, lr: 0.05}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: {int: [16, 48]}}
    - {name: body, block: depthwise_separable, out: {int: [16, 48]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""


@pytest.mark.slow
@pytest.mark.parametrize("gap", [0.02, 0.3])
def test_two_ctrl_c_close_together_during_a_real_search(tmp_path, gap):
    """A real `nascore search` (local Ray, two workers) gets SIGINT twice, `gap` seconds apart, sent to its whole
    process group as a terminal does, while trials train: it exits, summary.json says interrupted, no trial is
    left RUNNING, and a trial that was training waits for the resume with its parameters."""
    space = tmp_path / "twice.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    log = tmp_path / "driver.log"
    with _search_child([str(space), "--runs", str(runs), "--trials", "6", "--epochs", "30", "--workers", "2",
                        "--no-tensorboard"], log) as proc:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if runs.exists() and list(runs.glob("*/trials/*/graph.yaml")):
                break
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(1.0)                                   # training, not starting
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(gap)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    run = next(p for p in runs.iterdir() if not p.name.startswith("."))
    text = log.read_text()
    assert proc.returncode != 0, text[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "interrupted", (summary, text[-3000:])
    trials = _states(run)
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING], text[-3000:]
    interrupted = [t for t in trials if t.user_attrs.get("kind") == "interrupted"]
    assert interrupted, text[-3000:]
    for t in interrupted:
        if (run / "trials" / f"{t.number:05d}" / "graph.yaml").exists():   # it was training: queued again
            queued = [u for u in trials if u.user_attrs.get("retry_of") == t.number]
            assert [u.params or u.system_attrs.get("fixed_params") for u in queued] == [t.params]


@pytest.mark.slow
def test_ctrl_c_during_a_warm_start_keeps_its_scores_and_a_resume_completes_it(tmp_path, local_ray):
    """Ctrl-C while the workers score warm-start candidates: the search exits with summary.json saying interrupted,
    no trial left RUNNING and every score taken so far kept on its trial; a resume runs the warm start to its end
    and trains exactly the budget, the first attempt's records untouched."""
    from nascore.nas.driver import search

    space = tmp_path / "twice.yaml"
    space.write_text(SPACE)
    runs = tmp_path / "runs"
    log = tmp_path / "driver.log"
    with _search_child([str(space), "--runs", str(runs), "--trials", "2", "--epochs", "1", "--workers", "2",
                        "--no-tensorboard", "--warm-start", "naswot", "--warm-start-candidates", "200",
                        "--warm-start-top", "2"], log) as proc:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:      # until the workers have scored a few
            dbs = list(runs.glob("*/study.db")) if runs.exists() else []
            try:
                if dbs and sum("proxy" in t.user_attrs for t in _states(dbs[0].parent)) >= 3:
                    break
            except Exception:  # noqa: BLE001 - the study is still being created
                pass
            time.sleep(0.2)
        assert proc.poll() is None, log.read_text()[-3000:]
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    run = next(p for p in runs.iterdir() if not p.name.startswith("."))
    text = log.read_text()
    assert proc.returncode != 0 and "warm start: scored" not in text, text[-3000:]
    assert json.loads((run / "summary.json").read_text())["state"] == "interrupted"
    first = _states(run)
    assert not [t.number for t in first if t.state == optuna.trial.TrialState.RUNNING], text[-3000:]
    scores = {t.number: t.user_attrs["proxy"] for t in first if "proxy" in t.user_attrs}
    assert len(scores) >= 3 and not any(t.user_attrs.get("kind") == "trained" for t in first)

    search(resume=run, progress=None)
    after = RunDir.open(run).load_study()
    trials = after.get_trials(deepcopy=False)
    assert after.user_attrs["warm_start"]["done"] and after.user_attrs["warm_start"]["scored"] == 200
    assert {t.number: t.user_attrs["proxy"] for t in trials[:len(first)] if "proxy" in t.user_attrs} == scores
    trained = [t for t in trials if t.user_attrs.get("kind") == "trained"]
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    assert all(t.number >= len(first) for t in trained)    # chosen by the resumed warm start
    assert not [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
