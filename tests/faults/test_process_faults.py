"""A search process SIGKILLed at random (seeded) moments, three times in a row, each time resumed with
``nascore search --resume RUN`` in a child process too; then a last resume in-process. Afterwards the run is whole:
exactly `trials` budgeted trials, nothing that completed was trained again, every in-flight trial re-ran with its
parameters, every file parses, and leftover temporary files (a kill mid-write) are hidden and ignored.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from nascore import Graph
from nascore.nas.rundir import RunDir
from tests.conftest import ROOT

TRIALS, EPOCHS, KILLS = 8, 2, 3
SEED = int(os.environ.get("NASCORE_FAULTS_SEED", "20261123"))   # another seed explores other kill moments
SPACE = """\
name: killed
search: {data: digits, objectives: [val_acc], strategy: random, pruner: none, train: {batch_size: 64, lr: 0.05}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: {int: [4, 48]}, kernel: {choice: [1, 3]}}
    - {name: body, block: depthwise_separable, out: {int: [8, 48]}, stride: {choice: [1, 2]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               RAY_AUTH_MODE="disabled")
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "nascore.cli", "search", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)


def _run_dir(root: Path) -> Path | None:
    dirs = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return dirs[0] if dirs else None


def _kill_at_random_moment(proc: subprocess.Popen, log: Path, rng: random.Random, root: Path) -> str:
    log.touch()
    """Wait until the driver has started its workers (it prints the 'search NAME:' line), then a random 0.2-4 s
    more, then SIGKILL the driver's whole process group (Ray's processes with it)."""
    deadline = time.time() + 150
    while time.time() < deadline and proc.poll() is None:
        if b"\nsearch " in b"\n" + log.read_bytes() and _run_dir(root) is not None:
            break
        time.sleep(0.1)
    time.sleep(rng.uniform(0.2, 4.0))
    if proc.poll() is not None:
        return f"exited by itself with {proc.returncode}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return "killed"


def _snapshot(run: Path) -> dict:
    try:
        study = RunDir.open(run).load_study()
    except Exception:   # noqa: BLE001 - killed before the study existed
        return {"complete": {}, "running": {}}
    trials = study.get_trials(deepcopy=False)
    return {"complete": {t.number: t.values for t in trials if t.state == optuna.trial.TrialState.COMPLETE},
            "running": {t.number: (t.params, t.user_attrs.get("kind")) for t in trials
                        if t.state == optuna.trial.TrialState.RUNNING}}


@pytest.mark.slow
def test_three_sigkills_then_resume_leave_a_whole_run(local_ray, tmp_path):
    from nascore.nas.driver import search

    rng = random.Random(SEED)
    space = tmp_path / "killed.yaml"
    space.write_text(SPACE)
    root = tmp_path / "runs"
    logs = [tmp_path / f"driver-{i}.log" for i in range(KILLS)]   # one per process: the kill waits on its own
    history = []
    proc = _start([str(space), "--runs", str(root), "--trials", str(TRIALS), "--epochs", str(EPOCHS),
                   "--workers", "2", "--seed", "7"], logs[0])
    for kill in range(KILLS):
        outcome = _kill_at_random_moment(proc, logs[kill], rng, root)
        run = _run_dir(root)
        assert run is not None, f"no run directory after kill {kill}:\n{logs[kill].read_text()[-3000:]}"
        history.append((outcome, _snapshot(run)))
        if kill < KILLS - 1:
            proc = _start(["--resume", str(run)], logs[kill + 1])
    search(resume=run, progress=None)

    study = RunDir.open(run).load_study()
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    report = f"kills: {[h[0] for h in history]}\n" + "\n".join(
        f"#{t.number} {t.state.name} {t.user_attrs.get('kind')} retry_of={t.user_attrs.get('retry_of')}"
        for t in trials)

    # the budget, exactly; nothing left running or waiting
    budgeted = [t for t in trials if t.user_attrs.get("kind") in ("trained", "failed")]
    assert len(budgeted) == TRIALS, report
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING,
                                                 optuna.trial.TrialState.WAITING)], report
    # what completed before a kill stayed complete, with the same values, and was never trained again
    for _, snap in history:
        for number, values in snap["complete"].items():
            assert by_number[number].state == optuna.trial.TrialState.COMPLETE, report
            assert by_number[number].values == values, report
    for t in trials:
        origin = t.user_attrs.get("retry_of")
        if origin is not None:
            assert by_number[origin].state != optuna.trial.TrialState.COMPLETE, f"#{t.number} re-trains a COMPLETE " \
                                                                                f"trial #{origin}\n{report}"
    # every trial in flight at a kill was marked interrupted; one that was training ran again with its parameters,
    # one still being sampled (no complete architecture yet) did not
    for _, snap in history:
        for number, (params, kind) in snap["running"].items():
            t = by_number[number]
            assert t.user_attrs.get("kind") == "interrupted" and t.state == optuna.trial.TrialState.FAIL, report
            retries = [u for u in trials if u.user_attrs.get("retry_of") == number]
            if kind == "trained":
                assert len(retries) == 1 and retries[0].params == params, report
            else:
                assert not retries, report
    trained = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("kind") ==
               "trained"]
    assert len({t.user_attrs["hash"] for t in trained}) == len(trained), report   # no architecture trained twice

    # every file parses
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished", summary
    counts = summary["counts"]
    assert counts["complete"] + counts["failed"] + counts["pruned"] == TRIALS, counts
    assert counts["running"] == 0
    from safetensors.torch import load_file

    rundir = RunDir.open(run)
    for t in trials:
        folder = rundir.trial_dir(t.number)
        if (folder / "graph.yaml").exists():
            graph = Graph.load(folder / "graph.yaml")
            if (folder / "model.safetensors").exists():
                graph.build().load_state_dict(load_file(folder / "model.safetensors"))
        if t.number in {u.number for u in trained}:
            assert (folder / "model.safetensors").is_file(), f"#{t.number} complete without weights"
    best = summary["best"][0]["trial"]
    assert by_number[best].state == optuna.trial.TrialState.COMPLETE
    Graph.load(run / "best" / "graph.yaml").build().load_state_dict(load_file(run / "best" / "model.safetensors"))

    # temporary files: a SIGKILL mid-write leaves atomic.py's ``.NAME.XXXX.tmp`` behind (nothing removes it on
    # resume); acceptable only hidden, and ignored by everything that reads the run
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".best.", ".pareto."))]
    assert all(p.name.startswith(".") for p in leftovers), leftovers
    assert not [p for p in root.iterdir() if p != run], list(root.iterdir())   # RunDir.create leaves nothing
    from nascore.nas.runs import describe_run

    assert len(describe_run(run)["trials"]) == len(trials)
    print(f"{report}\nin flight at each kill: {[sorted(h[1]['running']) for h in history]}\n"
          f"hidden leftovers: {[str(p.relative_to(run)) for p in leftovers]}")


KILLED_WRITER = """
import os, signal, sys
from nascore.io.atomic import atomic_write

def write(fh):
    fh.write(b'{"state": "half-writt')
    fh.flush()
    os.kill(os.getpid(), signal.SIGKILL)   # the process dies mid-write, as under kill -9

atomic_write(sys.argv[1], write)
"""


def test_a_write_killed_midway_keeps_the_old_file_and_leaves_only_a_hidden_temp(tmp_path):
    """What nascore/atomic.py guarantees under SIGKILL: the target keeps its old content (never half a file);
    the temporary file stays behind -- nothing removes it later -- but it is hidden (.NAME.XXXX.tmp) and nothing
    that reads a run directory looks at it."""
    from nascore.nas.config import SearchConfig
    from nascore.nas.space import SearchSpace

    space = tmp_path / "killed.yaml"
    space.write_text(SPACE)
    run = RunDir.create(tmp_path / "runs", "killed", SearchSpace.load(space), SearchConfig())
    run.write_summary({"state": "old"})
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(run.path / "summary.json")], env=env,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert run.summary() == {"state": "old"}                      # the old file, whole
    leftovers = [p.name for p in run.path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".summary.json."), leftovers
    run.write_summary({"state": "new"})                           # later writes are not disturbed by it
    assert run.summary() == {"state": "new"}
    assert [p for p in run.path.iterdir() if p.name.endswith(".tmp")], "removed after all: update FAULTS.md"
    assert RunDir.open(run.path).config() == run.config()          # opening the run is not disturbed either
