"""Retrain one architecture from scratch at full budget, with the evaluator the search used (``nascore retrain``).

    OUT/graph.yaml         the architecture trained
    OUT/checkpoint.pt      the whole training state (Trainer.state_dict + what was trained on), after every epoch
    OUT/history.jsonl      one JSON line per epoch
    OUT/model.safetensors  the final weights (of the graph's module, without any resize wrapper)
    OUT/metrics.json       the final metrics
    OUT/nascore-output.json  marks the folder as nascore's (see :mod:`nascore.training.checkpointed`)

Every file is written atomically (a temporary file, then a rename): a crash or Ctrl-C leaves the previous epoch's
checkpoint intact. Running again on the same ``out_dir`` resumes from it and ends with exactly the result an
uninterrupted run would have had (weights, optimiser, schedule position and every RNG are restored).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from nascore.errors import RunError
from nascore.graph.core import Graph
from nascore.io.atomic import atomic_write_bytes, atomic_write_text
from nascore.training.checkpointed import CheckpointedRun
from nascore.training.data import check_fits, load_dataset
from nascore.training.trainer import TrainConfig, Trainer, seed_everything

FORMAT = 1


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


def _describe(key: str, record: Mapping[str, Any]) -> str:
    if key == "graph_hash":
        return f"graph (structural hash {record.get('graph_hash')}, graph {record.get('graph_name')!r})"
    return f"data set ({record.get('data')})"


def _load_initial(model: torch.nn.Module, weights: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Copy ``weights`` into ``model`` (inside any Resize wrapper); every key must fit."""
    from nascore.training.trainer import Resize

    core = model.model if isinstance(model, Resize) else model
    where = str(weights) if isinstance(weights, (str, Path)) else "initial weights"
    if isinstance(weights, (str, Path)):
        from safetensors.torch import load_file

        try:
            weights = load_file(str(weights))
        except Exception as exc:  # noqa: BLE001 - a missing or foreign file, named
            raise RunError(f"cannot read weights ({type(exc).__name__}: {str(exc)[:200]}); expected a "
                           "safetensors file of this graph's module", where=where) from None
    try:
        core.load_state_dict(dict(weights))
    except RuntimeError as exc:
        raise RunError(f"do not fit the graph's module: {str(exc).strip().splitlines()[0]:.300}; expected the "
                       "weights of this very graph", where=where) from None


def _model_of(trainer: Any) -> torch.nn.Module:
    from nascore.training.trainer import Resize

    return trainer.model.model if isinstance(trainer.model, Resize) else trainer.model


def train_graph(graph_or_path: Graph | str | Path, out_dir: str | Path, data: str = "digits",
                data_root: str | Path | None = None, data_params: Mapping[str, Any] | None = None,
                epochs: int | None = None, train: Mapping[str, Any] | None = None, resume: bool = True,
                device: str | None = "auto", progress: Callable[[str], None] | None = print,
                initial_weights: str | Path | Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train ``graph_or_path`` from scratch for ``epochs`` on ``data``; resumable; returns the final metrics.

    ``train`` overrides :class:`~nascore.training.trainer.TrainConfig` settings (``epochs`` and ``device``, when
    given, win over its keys; ``device="auto"`` leaves a ``train['device']`` alone). With ``resume`` an ``out_dir``
    holding a checkpoint of the same graph (structural hash), data and settings continues from its next epoch; a
    checkpoint of anything else is a RunError. ``initial_weights`` (a state dict of the graph's module, or a
    safetensors file of one, e.g. a one-shot search's inherited weights) fine-tunes instead of training from
    scratch. Returns ``{test_acc, val_acc, best_val_acc, best_epoch, train_acc, loss,
    epochs_done, epochs, checkpoint, weights, metrics, graph_hash, params, macs, seconds, resumed_from, ...}``.
    """
    from safetensors.torch import save as st_save

    say = progress or (lambda line: None)
    graph = _load_graph(graph_or_path)
    digest = graph.structural_hash()
    settings = dict(train or {})
    if epochs is not None:
        settings["epochs"] = epochs
    if device is not None and (device != "auto" or "device" not in settings):
        settings["device"] = device
    config = TrainConfig.from_dict(settings, "train")
    data_params = dict(data_params or {})
    data_record = json.dumps({"data": data, "params": data_params}, sort_keys=True, default=str)
    run = CheckpointedRun(out_dir, {"graph_hash": digest, "data": data_record}, "retrain",
                          extra={"format": FORMAT, "graph_name": graph.name})
    out = run.out
    splits = load_dataset(data, data_root, **data_params)
    check_fits(graph, splits)
    state, config = run.resume(config, resume, _describe)

    analysis = graph.analyse()
    model = _build_model(graph, splits, config)
    if initial_weights is not None and state is None:
        _load_initial(model, initial_weights)
    trainer = Trainer(model, splits, config)
    if state is None:
        say(f"{out}: training {graph.name!r} ({analysis.params:,} params, {analysis.macs / 1e6:.2f} MMACs) on "
            f"{splits.name!r} for {config.epochs} epochs on {trainer.device}"
            + (" from the given weights" if initial_weights is not None else " from scratch"))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "graph.yaml", graph.to_yaml())
    resumed_from = run.train(trainer, state, say)

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
        "train": config.to_dict(), "checkpoint": str(run.checkpoint), "weights": str(weights_path),
        "metrics": str(out / "metrics.json"), "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2, default=str) + "\n")
    say(f"{out}: test_acc {metrics['test_acc']:.4f}, val_acc {metrics['val_acc']:.4f} (best "
        f"{metrics['best_val_acc']:.4f} at epoch {metrics['best_epoch']}) after {trainer.epoch} epochs")
    return metrics


__all__ = ["train_graph"]
