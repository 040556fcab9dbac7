"""Where a model to export comes from: a run directory, a trained folder, or a graph."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nascore.errors import ExportError, NascoreError
from nascore.exporting.spec import GRAPH_FILE, MANIFEST, WEIGHTS_FILE
from nascore.exporting.verify import read_manifest, read_weights, verify_export
from nascore.graph.core import Graph
from nascore.blocks.spec import is_number


@dataclass
class Source:
    """A model to export: its graph, its weights (None: a fresh initialisation), what is known of it."""

    graph: Graph
    weights: dict[str, torch.Tensor] | None     # None: fresh initialisation
    metrics: dict[str, Any]
    origin: dict[str, Any]
    weights_state: str                          # "trained" | "untrained" | "pretrained"


def resolve_source(source: Any, trial: int | None = None) -> Source:
    """What ``source`` names: a :class:`~nascore.Graph` or graph YAML (untrained), a run directory (its best model,
    or trial ``trial``), a run's ``best/``, ``trials/N/`` or ``pareto/trial_N/`` folder, or a folder holding
    ``graph.yaml`` and ``model.safetensors`` (a ``nascore train`` output, an earlier export)."""
    if isinstance(source, Source):     # already resolved (pretrained weights brought in, nascore.exporting.pretrained)
        return source
    if isinstance(source, Graph):
        if trial is not None:
            raise ExportError("trial= applies to a run directory, not to a Graph")
        source.analyse()
        return Source(source, None, {}, {"kind": "graph", "path": source.source}, "untrained")
    path = Path(source)
    if not path.exists():
        raise ExportError("no such file or directory; expected a run directory, a graph YAML, or a folder holding "
                          "graph.yaml and model.safetensors", where=str(path))
    if _is_run(path):
        return _from_run(path, trial)
    if trial is not None:
        raise ExportError("trial= applies to a run directory (with config.yaml and space.yaml)", where=str(path))
    inside = _run_folder(path)
    if inside is not None:          # RUN/best, RUN/trials/N or RUN/pareto/trial_N: the run knows the metrics
        return _from_run(*inside)
    if path.is_dir():
        return _from_folder(path)
    graph = Graph.load(path)
    return Source(graph, None, {}, {"kind": "graph", "path": str(path.resolve())}, "untrained")


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file() and (path / "space.yaml").is_file()


def _run_folder(path: Path) -> tuple[Path, int | None] | None:
    """(run, trial) when ``path`` is a run's best/, trials/NNNNN/ or pareto/trial_NNNNN/ folder."""
    if not path.is_dir():
        return None
    path = path.resolve()
    if path.name == "best" and _is_run(path.parent):
        return path.parent, None
    if path.parent.name == "trials" and path.name.isdigit() and _is_run(path.parent.parent):
        return path.parent.parent, int(path.name)
    if (path.parent.name == "pareto" and path.name.startswith("trial_") and path.name[6:].isdigit()
            and _is_run(path.parent.parent)):
        return path.parent.parent, int(path.name[6:])
    return None


def _from_folder(path: Path) -> Source:
    graph_path, weights_path = path / GRAPH_FILE, path / WEIGHTS_FILE
    if not graph_path.is_file():
        raise ExportError(f"has no {GRAPH_FILE}; expected a run directory, a graph YAML, or a folder holding "
                          f"{GRAPH_FILE} and {WEIGHTS_FILE}", where=str(path))
    if not weights_path.is_file():
        raise ExportError(f"has {GRAPH_FILE} but no {WEIGHTS_FILE} (a trial that did not complete?); export the "
                          f"graph YAML itself for untrained weights", where=str(path))
    metrics: dict[str, Any] = {}
    origin: dict[str, Any] = {"kind": "folder", "path": str(path.resolve())}
    state = "trained"
    if (path / MANIFEST).is_file():          # a previous export: check it, keep what it knew
        problems = verify_export(path)
        if problems:
            raise ExportError(f"is an export that fails verification: {problems[0]}", where=str(path))
        manifest = read_manifest(path)
        metrics = dict(manifest.get("metrics") or {})
        origin = {**dict(manifest.get("source") or {}), "reexported_from": str(path.resolve())}
        state = str(manifest.get("weights", "trained"))
    elif (path / "metrics.json").is_file():  # a `nascore train` output folder
        try:
            data = json.loads((path / "metrics.json").read_text())
        except (OSError, ValueError):
            raise ExportError("metrics.json is corrupt", where=str(path)) from None
        if isinstance(data, Mapping):
            metrics = {k: v for k, v in data.items()
                       if is_number(v) or k in ("data", "device")}
            origin["kind"] = "training"
    return Source(Graph.load(graph_path), read_weights(weights_path), metrics, origin, state)


def _from_run(path: Path, trial: int | None) -> Source:
    from nascore.nas.rundir import RunDir

    run = RunDir.open(path)
    config = run.config()
    summary = run.summary()
    objectives = list(config.objectives)
    entries = list(summary.get("best") or []) + list(summary.get("pareto") or [])
    if trial is None:
        if not entries:
            raise ExportError("has no finished trial yet (summary.json lists no best trial); wait for one, or pick "
                              "a trial with trial=N", where=str(run.path))
        if len(objectives) == 1:
            entry = entries[0]
            folders = [run.trial_dir(entry["trial"]), run.path / "best"]
        else:
            sign = 1.0 if config.directions[0] == "maximize" else -1.0
            entry = max(entries, key=lambda e: (sign * float(e["values"][0]), -int(e["trial"])))
            folders = [run.trial_dir(entry["trial"]), run.path / "pareto" / f"trial_{int(entry['trial']):05d}"]
        number = int(entry["trial"])
        chosen = "best" if len(objectives) == 1 else f"Pareto member with the best {objectives[0]}"
    else:
        if not isinstance(trial, int) or isinstance(trial, bool) or trial < 0:
            raise ExportError(f"trial {trial!r}: expected a trial number >= 0", where=str(run.path))
        number = trial
        entry = next((e for e in entries if int(e.get("trial", -1)) == number), None)
        folders = [run.trial_dir(number)]
        if not folders[0].is_dir():
            raise ExportError(f"has no trial {number} (trials/{number:05d} is missing; only trained trials have a "
                              f"folder)", where=str(run.path))
        chosen = "requested"
    folder = next((f for f in folders if (f / GRAPH_FILE).is_file() and (f / WEIGHTS_FILE).is_file()), None)
    if folder is None:
        raise ExportError(f"trial {number} has no weights ({folders[0] / WEIGHTS_FILE} is missing): it did not "
                          f"complete (pruned, failed, or still running)", where=str(run.path))
    metrics: dict[str, Any] = {}
    attrs, values = _trial_record(run, config, number)
    if values is None and entry is not None:
        values = entry.get("values")
    if values is not None:
        metrics.update({o: float(v) for o, v in zip(objectives, values)})
    for key in ("test_acc", "params", "macs", "latency_ms", "seconds", "device"):
        if key in attrs and key not in metrics:
            metrics[key] = attrs[key]
    history = attrs.get("history") or []
    if history and "val_acc" not in metrics and isinstance(history[-1], Mapping) and "val_acc" in history[-1]:
        metrics["val_acc"] = float(history[-1]["val_acc"])
    if history:
        metrics["epochs"] = len(history)
    origin = {"kind": "run", "run": run.name, "path": str(run.path), "trial": number, "chosen": chosen,
              "space": summary.get("space") or _space_name(run), "data": config.data,
              "objectives": objectives, "directions": list(config.directions)}
    if entry is not None and entry.get("params") is not None:
        origin["sample"] = entry["params"]
    return Source(Graph.load(folder / GRAPH_FILE), read_weights(folder / WEIGHTS_FILE), metrics, origin, "trained")


def _space_name(run) -> str | None:
    try:
        return run.space().name
    except NascoreError:
        return None


def _trial_record(run, config, number: int) -> tuple[dict[str, Any], list[float] | None]:
    """The trial's user attributes and values from the study, or ({}, None) when the study cannot be read."""
    try:
        study = run.load_study(config)
        trials = study.get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the study is optional for an export: summary.json has the values
        return {}, None
    found = next((t for t in trials if t.number == number), None)
    if found is None:
        return {}, None
    return dict(found.user_attrs), (list(found.values) if found.values is not None else None)


__all__ = ["Source", "resolve_source"]
