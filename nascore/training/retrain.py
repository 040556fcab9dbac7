"""Retrain one architecture from scratch at full budget, with the evaluator the search used (``nascore retrain``).

    OUT/graph.yaml         the architecture trained
    OUT/checkpoint.pt      the whole training state (Trainer.state_dict + what was trained on), after every epoch
    OUT/history.jsonl      one JSON line per epoch
    OUT/model.safetensors  the final weights (of the graph's module, without any resize wrapper)
    OUT/metrics.json       the final metrics

Every file is written atomically (a temporary file, then a rename): a crash or Ctrl-C leaves the previous epoch's
checkpoint intact. Running again on the same ``out_dir`` resumes from it and ends with exactly the result an
uninterrupted run would have had (weights, optimiser, schedule position and every RNG are restored).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nascore.errors import RunError
from nascore.graph.core import Graph
from nascore.io.atomic import atomic_write_bytes, atomic_write_text
from nascore.training.data import check_fits, load_dataset
from nascore.training.trainer import TrainConfig, Trainer, read_checkpoint, seed_everything, write_checkpoint

CHECKPOINT = "checkpoint.pt"
FORMAT = 1
# settings that may differ on resume without changing the result (where and how fast it runs)
_RESUME_FREE = ("device", "threads")
_AFRESH = "; delete it or pass resume=False (--no-resume) to train afresh"


def _load_graph(graph_or_path: Graph | str | Path) -> Graph:
    if isinstance(graph_or_path, Graph):
        graph = graph_or_path
        graph.analyse()
        return graph
    path = Path(graph_or_path)
    if path.is_dir():  # a trial, best/ or pareto/trial_N folder of a run: its graph.yaml
        if not (path / "graph.yaml").is_file():
            raise RunError("is a directory without graph.yaml; expected a graph YAML file or a folder holding "
                           "graph.yaml (a run's best/ or trials/N/)", where=str(path))
        path = path / "graph.yaml"
    return Graph.load(path)


def _build_model(graph: Graph, splits: Any, config: Any) -> torch.nn.Module:
    """Exactly as a search trial: seeded build, and a Resize wrapper when the graph's side differs from the data."""
    from nascore.training.trainer import Resize

    seed_everything(config.seed)
    model = graph.build(drop_path_rate=config.drop_path if config.drop_path > 0 else None)
    if tuple(graph.input_shape[1:]) != tuple(splits.input_shape[1:]):
        model = Resize(model, tuple(graph.input_shape[1:]))
    return model


def _read_checkpoint(path: Path) -> dict[str, Any]:
    state = read_checkpoint(path, advice=_AFRESH)
    if not isinstance(state.get("nascore"), Mapping) or "epoch" not in state:
        raise RunError(f"is not a nascore retrain checkpoint (no 'nascore' record){_AFRESH}", where=str(path))
    return state


def _model_of(trainer: Any) -> torch.nn.Module:
    from nascore.training.trainer import Resize

    return trainer.model.model if isinstance(trainer.model, Resize) else trainer.model


def _write_history(path: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in history))


def _append_history(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def train_graph(graph_or_path: Graph | str | Path, out_dir: str | Path, data: str = "digits",
                data_root: str | Path | None = None, data_params: Mapping[str, Any] | None = None,
                epochs: int | None = None, train: Mapping[str, Any] | None = None, resume: bool = True,
                device: str | None = "auto", progress: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Train ``graph_or_path`` from scratch for ``epochs`` on ``data``; resumable; returns the final metrics.

    ``train`` overrides :class:`~nascore.training.trainer.TrainConfig` settings (``epochs`` and ``device``, when
    given, win over its keys; ``device="auto"`` leaves a ``train['device']`` alone). With ``resume`` an ``out_dir``
    holding a checkpoint of the same graph (structural hash), data and settings continues from its next epoch; a
    checkpoint of anything else is a RunError. Returns ``{test_acc, val_acc, best_val_acc, best_epoch, train_acc, loss,
    epochs_done, epochs, checkpoint, weights, metrics, graph_hash, params, macs, seconds, resumed_from, ...}``.
    """
    from safetensors.torch import save as st_save

    say = progress or (lambda line: None)
    graph = _load_graph(graph_or_path)
    digest = graph.structural_hash()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunError("exists and is not a directory; expected an output folder", where=str(out))

    settings = dict(train or {})
    if epochs is not None:
        settings["epochs"] = epochs
    if device is not None and (device != "auto" or "device" not in settings):
        settings["device"] = device
    config = TrainConfig.from_dict(settings, "train")
    data_params = dict(data_params or {})
    splits = load_dataset(data, data_root, **data_params)
    check_fits(graph, splits)
    data_record = json.dumps({"data": data, "params": data_params}, sort_keys=True, default=str)

    ckpt_path = out / CHECKPOINT
    state = _read_checkpoint(ckpt_path) if resume and ckpt_path.is_file() else None
    if state is not None:
        info = state["nascore"]
        if info.get("graph_hash") != digest:
            raise RunError(f"holds a checkpoint of another graph (structural hash {info.get('graph_hash')}, graph "
                           f"{info.get('graph_name')!r}) than the one given ({digest}, graph {graph.name!r}); "
                           "expected the same graph: use another output folder, or resume=False (--no-resume) to "
                           "overwrite it", where=str(out))
        if info.get("data") != data_record:
            raise RunError(f"holds a checkpoint trained on {info.get('data')}, not {data_record}; expected the same "
                           "data set: use another output folder, or resume=False (--no-resume)", where=str(out))
        done = int(state["epoch"])
        stored = state.get("config") if isinstance(state.get("config"), Mapping) else {}
        mine = config.to_dict()
        if done < config.epochs:
            changed = sorted(k for k in mine if k not in _RESUME_FREE and stored.get(k) != mine[k])
            if changed:
                shown = ", ".join(f"{k} {stored.get(k)!r} -> {mine[k]!r}" for k in changed)
                raise RunError(f"holds a checkpoint trained with other settings ({shown}); expected the same to "
                               "resume: give the original settings, or resume=False (--no-resume) to train afresh",
                               where=str(out))
        else:  # finished before (perhaps for more epochs): report it as it is, with its own settings
            config = TrainConfig.from_dict({**{k: v for k, v in stored.items() if k not in _RESUME_FREE},
                                            **{k: mine[k] for k in _RESUME_FREE}}, f"{ckpt_path}: config")

    out.mkdir(parents=True, exist_ok=True)
    analysis = graph.analyse()
    model = _build_model(graph, splits, config)
    trainer = Trainer(model, splits, config)
    history_path = out / "history.jsonl"
    resumed_from = 0
    if state is not None:
        trainer.load_state_dict(state, where=str(ckpt_path))
        resumed_from = trainer.epoch
        if trainer.epoch >= config.epochs:
            say(f"{out}: all {trainer.epoch} epochs were trained already; reporting")
        else:
            say(f"{out}: resuming after epoch {trainer.epoch} of {config.epochs}")
    else:
        say(f"{out}: training {graph.name!r} ({analysis.params:,} params, {analysis.macs / 1e6:.2f} MMACs) on "
            f"{splits.name!r} for {config.epochs} epochs on {trainer.device}")
    atomic_write_text(out / "graph.yaml", graph.to_yaml())
    # the history file follows the checkpoint: a crash between the two never leaves a line too many or too few
    _write_history(history_path, trainer.history)
    meta = {"format": FORMAT, "graph_hash": digest, "graph_name": graph.name, "data": data_record}

    def save_checkpoint() -> None:
        ckpt = trainer.state_dict()
        ckpt["nascore"] = meta
        write_checkpoint(ckpt_path, ckpt)

    while trainer.epoch < config.epochs:
        record = trainer.train_epoch()
        save_checkpoint()
        _append_history(history_path, record)
        say(f"epoch {record['epoch']}/{config.epochs}: loss {record['loss']:.4f}, train_acc "
            f"{record['train_acc']:.4f}, val_acc {record['val_acc']:.4f}, lr {record['lr']:.3g} "
            f"({record['seconds']:.1f} s)")

    history = trainer.history
    last = history[-1] if history else {"val_acc": trainer.evaluate("val"), "train_acc": math.nan,
                                        "loss": math.nan}
    best = max(history, key=lambda r: r["val_acc"]) if history else last
    weights_path = out / "model.safetensors"
    weights = {k: v.detach().to("cpu").contiguous() for k, v in _model_of(trainer).state_dict().items()}
    blob = st_save(weights, metadata={"graph_hash": digest, "graph_name": graph.name})
    atomic_write_bytes(weights_path, blob)
    metrics = {
        "graph": graph.name, "graph_hash": digest, "data": data, "params": analysis.params, "macs": analysis.macs,
        "test_acc": trainer.evaluate("test"), "val_acc": float(last["val_acc"]),
        "best_val_acc": float(best["val_acc"]), "best_epoch": int(best.get("epoch", trainer.epoch)),
        "train_acc": float(last["train_acc"]), "loss": float(last["loss"]), "epochs_done": trainer.epoch,
        "epochs": config.epochs, "resumed_from": resumed_from,
        "seconds": float(sum(r.get("seconds", 0.0) for r in history)), "device": str(trainer.device),
        "train": config.to_dict(), "checkpoint": str(ckpt_path), "weights": str(weights_path),
        "metrics": str(out / "metrics.json"), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    say(f"{out}: test_acc {metrics['test_acc']:.4f}, val_acc {metrics['val_acc']:.4f} (best "
        f"{metrics['best_val_acc']:.4f} at epoch {metrics['best_epoch']}) after {trainer.epoch} epochs")
    return metrics


__all__ = ["train_graph"]
