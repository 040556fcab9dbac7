"""Supernet training and one-shot search with real parts: digits, the real trainer, a killed process, Ray Train
with two gloo workers, and a real search whose best subnet is exported and fine-tuned."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from nascore.errors import EvaluatorError, RunError
from nascore.oneshot.training import SinglePath, load_supernet, train_supernet
from tests.conftest import ROOT

SPACE = {
    "name": "tiny",
    "search": {"data": "digits", "train": {"batch_size": 64, "lr": 0.1, "threads": 1}, "epochs": 1},
    "graph": {
        "input": [1, 8, 8],
        "nodes": [
            {"name": "stem", "block": "conv_bn_act", "out": 8},
            {"name": "stage", "block": "mbconv", "repeat": {"int": [1, 2]}, "out": {"choice": [8, 16]},
             "expand": {"choice": [1, 3]}, "kernel": {"choice": [3, 5]}},
            {"name": "gap", "block": "global_avg_pool"},
            {"name": "fc", "block": "linear", "out": 10},
        ],
    },
}


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


@pytest.fixture(scope="module")
def trained(space_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("sn") / "supernet"
    summary = train_supernet(space_file, out, epochs=3, device="cpu", progress=None)
    return out, summary


def _weights(folder):
    return load_file(str(folder / "supernet.safetensors"))


def test_training_writes_a_folder_that_loads_and_learns(trained):
    out, summary = trained
    assert {p.name for p in out.iterdir()} >= {"space.yaml", "supernet.json", "checkpoint.pt", "history.jsonl",
                                               "supernet.safetensors"}
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["paths_val_acc"] > 0.3          # ten classes: chance is 0.1
    supernet, info = load_supernet(out)
    assert info["sampling"] == "uniform" and info["kernel_sharing"] == "slice"
    for key, tensor in supernet.state_dict().items():
        torch.testing.assert_close(tensor, _weights(out)[key])


def test_single_path_draws_the_same_paths_on_every_rank_and_run(trained):
    supernet, _ = load_supernet(trained[0])
    a, b = SinglePath(supernet, seed=3), SinglePath(supernet, seed=3)
    assert [a.path(s).to_yaml() for s in range(6)] == [b.path(s).to_yaml() for s in range(6)]
    assert len({a.path(s).to_yaml() for s in range(12)}) > 3
    small = SinglePath(supernet, accept=lambda g: g.analyse().params < 3000)
    assert all(small.path(s).analyse().params < 3000 for s in range(5))


def test_kill_9_and_resume_continues_the_same_run(space_file, trained, tmp_path):
    """A process killed after its first checkpoint, resumed, ends with exactly the uninterrupted run's weights."""
    out = tmp_path / "killed"
    cmd = [os.path.join(os.path.dirname(sys.executable), "nascore"), "supernet", "train", str(space_file), "-o", str(out),
           "--epochs", "3", "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    history = out / "history.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if history.is_file() and history.read_text().count("\n") >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "supernet.safetensors").exists()
    with pytest.raises(RunError, match="has not finished"):
        load_supernet(out)
    summary = train_supernet(space_file, out, epochs=3, device="cpu", progress=None)
    assert 1 <= summary["resumed_from"] < 3
    whole = _weights(trained[0])
    resumed = _weights(out)
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key


def test_other_settings_do_not_resume(space_file, trained):
    with pytest.raises(RunError, match=r"other settings \(.*lr 0.1 -> 0.05\)"):
        train_supernet(space_file, trained[0], epochs=4, train={"lr": 0.05}, device="cpu", progress=None)
    with pytest.raises(RunError, match=r"another supernet"):
        train_supernet(space_file, trained[0], epochs=3, sampling="fair", device="cpu", progress=None)


def test_ray_train_two_workers_follow_the_single_process_loss_curve(space_file, trained, tmp_path, local_ray):
    """Two DDP ranks (gloo), each on half of every global batch, train the same path sequence as one process."""
    summary = train_supernet(space_file, tmp_path / "ddp", epochs=3, workers=2, progress=None)
    single = [json.loads(line) for line in (trained[0] / "history.jsonl").read_text().splitlines()]
    double = summary["history"]
    assert [h["epoch"] for h in double] == [1, 2, 3]
    for one, two in zip(single, double):
        assert two["loss"] == pytest.approx(one["loss"], rel=0.08), (one, two)
    supernet, info = load_supernet(tmp_path / "ddp")
    assert info["workers"] == 2


def test_one_shot_search_exports_and_fine_tunes_the_inherited_subnet(space_file, trained, tmp_path, local_ray):
    from nascore.exporting.package import export
    from nascore.exporting.verify import load_model
    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir
    from nascore.training.retrain import train_graph

    out = trained[0]
    run = search(space_file, runs_root=tmp_path / "runs", trials=6, workers=1, evaluator="supernet",
                 evaluator_options={"checkpoint": str(out)}, strategy="evolution", progress=None)
    summary = RunDir.open(run).summary()
    assert summary["counts"]["complete"] == 6
    best = summary["best"][0]
    # the trial kept the inherited weights with recalibrated statistics: loaded into the graph's module, they give
    # the accuracy the search recorded
    trial_dir = os.path.dirname(best["graph"])
    from nascore.graph.core import Graph
    from nascore.training.data import load_dataset
    from nascore.training.trainer import Trainer

    graph = Graph.load(best["graph"])
    model = graph.build()
    model.load_state_dict(load_file(os.path.join(trial_dir, "model.safetensors")))
    supernet, _ = load_supernet(out)
    inherited = supernet.extract(graph)
    conv = next(k for k in inherited if k.endswith("weight") and inherited[k].dim() == 4)
    assert torch.equal(model.state_dict()[conv], inherited[conv])
    trainer = Trainer(model, load_dataset("digits"), device="cpu")
    assert trainer.evaluate("val") == pytest.approx(best["values"][0])

    exported = export(run, tmp_path / "export", formats="safetensors")
    module = load_model(exported)
    assert set(module.state_dict()) == set(model.state_dict())

    tuned = train_graph(best["graph"], tmp_path / "tuned", epochs=1, train={"batch_size": 64, "lr": 0.01},
                        device="cpu", progress=None, initial_weights=os.path.join(trial_dir, "model.safetensors"))
    assert tuned["test_acc"] > 0.3


def test_a_supernet_warm_start_trains_only_its_best_scored_candidates(space_file, trained, tmp_path, local_ray):
    """One-shot screening, then training: M samples scored with inherited weights, only the best k trained."""
    import optuna

    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir

    run = search(space_file, runs_root=tmp_path / "runs", trials=2, epochs=1, workers=1, strategy="random",
                 pruner="none", warm_start_proxy="supernet", warm_start_options={"checkpoint": str(trained[0])},
                 warm_start_candidates=5, warm_start_top=2, progress=None)
    trials = RunDir.open(run).load_study().get_trials(deepcopy=False)
    trained_ = [t for t in trials if t.user_attrs.get("kind") == "trained"]
    scored = [t for t in trials if t.user_attrs.get("kind") == "scored"]
    assert len(trained_) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained_)
    assert len(scored) == 3 and all(t.user_attrs["proxy_name"] == "supernet" for t in trained_ + scored)
    assert min(t.user_attrs["proxy"] for t in trained_) >= max(t.user_attrs["proxy"] for t in scored)
    assert all(0.0 <= t.user_attrs["proxy"] <= 1.0 for t in trained_ + scored)    # one-shot val accuracies
    assert all(t.intermediate_values for t in trained_) and not any(t.intermediate_values for t in scored)


def test_a_supernet_of_another_space_is_refused_by_name(trained, tmp_path, local_ray):
    from nascore.nas.driver import search

    other = dict(SPACE, graph=dict(SPACE["graph"], nodes=[dict(n) for n in SPACE["graph"]["nodes"]]))
    other["graph"]["nodes"][0]["out"] = 12
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(other))
    with pytest.raises(EvaluatorError, match=r"evaluator 'supernet': option 'checkpoint': .*trained on space "
                                             r"'tiny'"):
        search(path, runs_root=tmp_path / "runs", trials=1, evaluator="supernet",
               evaluator_options={"checkpoint": str(trained[0])}, progress=None)
    with pytest.raises(EvaluatorError, match=r"evaluator 'supernet': option 'checkpoint': missing"):
        search(path, runs_root=tmp_path / "runs", trials=1, evaluator="supernet", progress=None)


def test_a_restarted_worker_group_resumes_its_own_run_even_with_no_resume(space_file, trained, tmp_path,
                                                                          monkeypatch):
    """What a distributed run's restarted worker group does (without Ray): its checkpoint carries the run's token,
    and a restart with resume=False (--no-resume) continues it, bit-identically; another run's token starts afresh."""
    import nascore.oneshot.training as training

    jobs = []
    monkeypatch.setattr(training, "_train", lambda job, **kw: jobs.append(job))
    train_supernet(space_file, tmp_path / "out", epochs=3, device="cpu", resume=False, progress=None)
    monkeypatch.undo()
    job = {**jobs[0], "run_token": "run-a"}

    class Lost(Exception):
        pass

    def lose_in_epoch_2(record):
        if record["epoch"] == 2:
            raise Lost                       # the node is lost before epoch 2 is checkpointed

    with pytest.raises(Lost):
        training._train(job, 0, 1, lambda line: None, report=lose_in_epoch_2)
    said: list[str] = []
    summary = training._train(job, 0, 1, said.append)                  # the restart: resume=False, same token
    assert summary["resumed_from"] == 1 and any("worker group restarted" in line for line in said), said
    assert [r["epoch"] for r in summary["history"]] == [1, 2, 3]
    reference = _weights(trained[0])
    assert all(torch.equal(v, reference[k]) for k, v in _weights(tmp_path / "out").items())
    again = training._train({**job, "run_token": "run-b"}, 0, 1, lambda line: None)   # another run: afresh
    assert again["resumed_from"] == 0
