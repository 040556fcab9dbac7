"""Retraining one architecture: real training on digits, the files it writes, exact resume, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from nascore import Graph
from nascore.errors import RunError
from nascore.training.retrain import train_graph

# small batches and a high rate suit a tiny net on 1078 digits; one thread: tiny nets gain nothing from more
TRAIN = dict(batch_size=16, lr=0.5, threads=1)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_graph(classes: int = 10, shape=(1, 8, 8), out: int = 16) -> Graph:
    g = Graph("tiny", shape)
    g.add("conv", "conv_bn_act", out=out)
    g.add("gap", "global_avg_pool")
    g.add("fc", "linear", out=classes)
    return g


class Crash(Exception):
    pass


def crash_after(epoch: int, lines: list[str]):
    def progress(line: str) -> None:
        lines.append(line)
        if line.startswith(f"epoch {epoch}/"):
            raise Crash  # after the epoch's checkpoint and history line were written, like a SIGKILL there
    return progress


def run(graph, out, **kw):
    return train_graph(graph, out, train=TRAIN, device="cpu", progress=None, **{"epochs": 3, **kw})


def test_retrain_learns_and_writes_its_files(tmp_path):
    lines: list[str] = []
    graph_file = tmp_path / "tiny.yaml"
    tiny_graph().save(graph_file)
    m = train_graph(graph_file, tmp_path / "out", epochs=3, train=TRAIN, device="cpu", progress=lines.append)
    out = tmp_path / "out"
    assert m["epochs_done"] == 3 and m["epochs"] == 3 and m["resumed_from"] == 0
    assert m["val_acc"] > 0.5 and m["test_acc"] > 0.5 and m["best_val_acc"] >= m["val_acc"]  # chance is 0.1
    assert 1 <= m["best_epoch"] <= 3
    assert m["checkpoint"] == str(out / "checkpoint.pt")
    assert m["graph_hash"] == tiny_graph().structural_hash()
    assert sum(line.startswith("epoch ") for line in lines) == 3

    assert Graph.load(out / "graph.yaml").structural_hash() == m["graph_hash"]
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["val_acc"] == m["val_acc"]
    assert json.loads((out / "metrics.json").read_text())["test_acc"] == m["test_acc"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left

    # the checkpoint is plain data: weights_only loading reads it, and it names what was trained
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and state["nascore"]["graph_hash"] == m["graph_hash"]
    weights = load_file(out / "model.safetensors")
    model = tiny_graph().build()
    model.load_state_dict(weights)  # the graph's own module: no wrapper prefix
    for key, value in model.state_dict().items():
        assert torch.equal(value, state["model"][key])

    # done already: just report, for the same or fewer epochs
    again = run(graph_file, out)
    assert again["epochs_done"] == 3 and again["resumed_from"] == 3 and again["test_acc"] == m["test_acc"]
    fewer = run(graph_file, out, epochs=2)
    assert fewer["epochs_done"] == 3 and fewer["val_acc"] == m["val_acc"]
    # the trial folder of a run (graph.yaml inside) is accepted as the graph
    assert run(out, out)["epochs_done"] == 3


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    whole = run(tiny_graph(), tmp_path / "whole", epochs=4)

    lines: list[str] = []
    with pytest.raises(Crash):
        train_graph(tiny_graph(), tmp_path / "cut", epochs=4, train=TRAIN, device="cpu",
                    progress=crash_after(2, lines))
    state = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 2
    assert not (tmp_path / "cut" / "metrics.json").exists()
    assert len((tmp_path / "cut" / "history.jsonl").read_text().splitlines()) == 2

    torch.manual_seed(1234)  # disturb the global RNGs: the checkpoint restores them
    lines.clear()
    resumed = train_graph(tiny_graph(), tmp_path / "cut", epochs=4, train=TRAIN, device="cpu",
                          progress=lines.append)
    assert "resuming after epoch 2 of 4" in lines[0]
    assert resumed["resumed_from"] == 2 and resumed["epochs_done"] == 4
    for key in ("val_acc", "test_acc", "best_val_acc", "best_epoch", "train_acc", "loss"):
        assert resumed[key] == whole[key], key
    a = load_file(tmp_path / "whole" / "model.safetensors")
    b = load_file(tmp_path / "cut" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key

    def strip(path):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in path.read_text().splitlines()]
    assert strip(tmp_path / "cut" / "history.jsonl") == strip(tmp_path / "whole" / "history.jsonl")


def test_other_graph_corrupt_checkpoint_other_settings_are_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(Crash):
        train_graph(tiny_graph(), out, epochs=3, train=TRAIN, device="cpu", progress=crash_after(1, []))
    mine, other = tiny_graph().structural_hash(), tiny_graph(out=8).structural_hash()
    with pytest.raises(RunError, match=rf"out: holds a checkpoint of another graph \(structural hash {mine}.*"
                                       rf"\(structural hash {other}, graph 'tiny'\)"):
        run(tiny_graph(out=8), out)
    with pytest.raises(RunError, match=r"other settings \(lr 0.5 -> 0.1\)"):
        train_graph(tiny_graph(), out, epochs=3, train={**TRAIN, "lr": 0.1}, device="cpu", progress=None)
    with pytest.raises(RunError, match=r"another data set .*digits.*given .*synthetic"):
        run(tiny_graph(), out, data="synthetic", data_params={"shape": [1, 8, 8], "classes": 10})
    # refusals touched nothing: the original resumes
    assert run(tiny_graph(), out)["resumed_from"] == 1

    # a fresh start on request replaces the checkpoint of another graph
    fresh = run(tiny_graph(out=8), out, epochs=1, resume=False)
    assert fresh["resumed_from"] == 0 and fresh["epochs_done"] == 1
    assert len((out / "history.jsonl").read_text().splitlines()) == 1

    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:200])  # truncated, as by a full disk
    with pytest.raises(RunError, match=r"checkpoint.pt: not a readable checkpoint"):
        run(tiny_graph(out=8), out)
    ckpt.write_bytes(b"junk")
    with pytest.raises(RunError, match=r"checkpoint.pt: not a readable checkpoint"):
        run(tiny_graph(out=8), out)
    torch.save({"model": {}}, ckpt)
    with pytest.raises(RunError, match=r"checkpoint.pt: is not a nascore retrain checkpoint"):
        run(tiny_graph(out=8), out)


def test_data_must_fit_the_graph_and_other_sides_are_resized(tmp_path):
    with pytest.raises(RunError, match=r"takes 3 input channels but data set 'digits' has 1"):
        run(tiny_graph(shape=(3, 8, 8)), tmp_path / "a")
    with pytest.raises(RunError, match=r"outputs \[7\] but data set 'digits' has 10 classes"):
        run(tiny_graph(classes=7), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()

    # a graph for 12x12 inputs is fed resized digits, as in a search with compound scaling
    m = run(tiny_graph(shape=(1, 12, 12)), tmp_path / "c", epochs=2)
    assert m["epochs_done"] == 2 and m["val_acc"] > 0.3
    weights = load_file(tmp_path / "c" / "model.safetensors")
    tiny_graph(shape=(1, 12, 12)).build().load_state_dict(weights)  # saved without the resize wrapper
