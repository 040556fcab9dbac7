"""Export a trained (or fresh) architecture as a self-describing, checksummed folder; load it back safely.

    OUT/graph.yaml          the concrete architecture (always)
    OUT/model.safetensors   the weights (always; format ``weights``)
    OUT/model.ts            TorchScript (format ``torchscript``): ``torch.jit.load``, no nascore needed
    OUT/model.pt2           torch.export (format ``torch_export``): ``torch.export.load``, no nascore needed
    OUT/model.onnx          ONNX (format ``onnx``), checked against PyTorch with onnxruntime
    OUT/manifest.json       versions, graph hash / params / MACs, input and output shapes, the run's metrics, where
                            it came from, and the sha256 and size of every other file

Formats are plugins (hook ``nascore_exporters``, :class:`ExporterSpec`); the built-in ones live in
``nascore_plugins.exporters``. Every format takes a batch of any size (the batch dimension is exported dynamic; a
format that cannot do so says ``"batch": "static"`` in the manifest).

An export is written into a hidden temporary folder beside ``out`` and renamed into place when complete: an
interrupted or failing export leaves no half model and never replaces a good ``out`` with a broken one.
:func:`load_model` checks the checksums before it reads anything, and reads weights with safetensors only (no
pickle).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.errors import ChecksumError, ExportError, NascoreError
from nascore.graph.core import Graph
from nascore.ext.registry import Registry
from nascore.io.yamlio import read_bytes

MANIFEST = "manifest.json"
GRAPH_FILE = "graph.yaml"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FORMAT = "nascore-export"
MANIFEST_VERSION = 1
EXAMPLE_BATCH = 2          # torch.export specialises sizes 0 and 1: a batch of 2 lets the batch dimension stay dynamic
EXAMPLE_SEED = 0
UNTRAINED_SEED = 0
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_RESERVED = (MANIFEST, GRAPH_FILE)


# -- the plugin interface -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExporterSpec:
    """One export format.

    ``write(model, example_input, path, graph)`` writes the format's file at ``path`` (``OUT/<filename>`` inside the
    temporary folder; it may add sidecar files beside it, e.g. ONNX external data: every file is checksummed) and
    returns extra facts for the manifest (a JSON-ready dict, or None). ``model`` is the built module in eval mode on
    the CPU; ``example_input`` a float32 batch of :data:`EXAMPLE_BATCH` samples; ``graph`` the concrete
    :class:`~nascore.Graph`. Raise :class:`~nascore.errors.ExportError` when the result is wrong (e.g. it does not
    reproduce PyTorch's outputs).

    ``requires``: modules the format needs; a missing one makes requesting the format an ExportError saying what to
    install (``install``, default ``pip install nascore[<name>]``). ``default``: whether ``formats=None`` ("all")
    includes it when its requirements are installed. ``aliases``: other names accepted for it.
    """

    name: str
    filename: str
    write: Callable[[nn.Module, torch.Tensor, Path, Graph], Mapping[str, Any] | None]
    doc: str = ""
    requires: tuple[str, ...] = ()
    install: str | None = None
    default: bool = True
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.match(r"^[a-z][a-z0-9_]*$", self.name):
            raise ValueError(f"exporter name {self.name!r}: expected lowercase letters, digits and '_'")
        if not isinstance(self.filename, str) or not _PLAIN_NAME.match(self.filename) or self.filename in _RESERVED:
            raise ValueError(f"exporter {self.name!r}: filename {self.filename!r} must be a plain file name other "
                             f"than {', '.join(_RESERVED)}")
        if not callable(self.write):
            raise ValueError(f"exporter {self.name!r}: write must be callable")
        if isinstance(self.requires, str) or not all(isinstance(m, str) for m in self.requires):
            raise ValueError(f"exporter {self.name!r}: requires must be a tuple of module names")

    @property
    def install_hint(self) -> str:
        return self.install or f"pip install nascore[{self.name}]"

    def missing(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        out = []
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                out.append(module)
        return out

    @property
    def available(self) -> bool:
        return not self.missing()


EXPORTERS: Registry[ExporterSpec] = Registry("exporter", "nascore_exporters", ExporterSpec, ExportError)


def exporter(name: str) -> ExporterSpec:
    """The format called ``name`` (or one of its aliases); ExportError with the closest names otherwise."""
    return EXPORTERS.get(name)


# -- helpers for exporters ------------------------------------------------------------------------------------------


def flatten_outputs(value: Any) -> list[torch.Tensor]:
    """A model's result as a flat list of tensors (one output, a tuple or list of them, nested)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in flatten_outputs(item)]
    if isinstance(value, Mapping):
        return [t for item in value.values() for t in flatten_outputs(item)]
    raise ExportError(f"model returned {type(value).__name__}, expected tensors")


def compare_outputs(expected: Sequence[Any], got: Sequence[Any], atol: float, rtol: float, what: str) -> float:
    """Max abs difference of two output lists (tensors or arrays); ExportError when any element is outside
    ``|got - expected| <= atol + rtol * |expected|`` or shapes differ."""
    if len(expected) != len(got):
        raise ExportError(f"{what}: {len(got)} outputs, expected {len(expected)}")
    worst = 0.0
    for i, (e, g) in enumerate(zip(expected, got)):
        e = torch.as_tensor(e).detach().to("cpu", torch.float64)
        g = torch.as_tensor(g).detach().to("cpu", torch.float64)
        if tuple(e.shape) != tuple(g.shape):
            raise ExportError(f"{what}: output {i} has shape {list(g.shape)}, expected {list(e.shape)}")
        if e.numel() == 0:
            continue
        finite = torch.isfinite(e)
        same_special = (e == g) | (e.isnan() & g.isnan())       # inf of the same sign, or NaN, where PyTorch has it
        if not torch.equal(finite, torch.isfinite(g)) or not bool(same_special[~finite].all()):
            raise ExportError(f"{what}: output {i} has non-finite values where PyTorch's differ")
        diff = torch.where(finite, (e - g).abs(), torch.zeros_like(e))
        worst = max(worst, float(diff.max()))
        bad = diff > atol + rtol * e.abs()
        if bool(bad.any()):
            raise ExportError(f"{what}: output {i} differs from PyTorch by up to {float(diff.max()):.3g} "
                              f"({int(bad.sum())} of {e.numel()} values beyond atol {atol:g} + rtol {rtol:g})")
    return worst


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def output_names(graph: Graph) -> list[str]:
    """Graph outputs as identifiers (``pan:n0`` -> ``pan_n0``): the names ONNX and the manifest use."""
    names = []
    for ref in graph.outputs:
        name = re.sub(r"[^A-Za-z0-9_]", "_", str(ref))
        while name in names:
            name += "_"
        names.append(name)
    return names


# -- where a model comes from ---------------------------------------------------------------------------------------


@dataclass
class _Source:
    graph: Graph
    weights: dict[str, torch.Tensor] | None     # None: fresh initialisation
    metrics: dict[str, Any]
    origin: dict[str, Any]
    weights_state: str                          # "trained" | "untrained"


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except FileNotFoundError:
        raise ExportError("file not found", where=str(path)) from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ExportError(f"is not a readable safetensors file: {exc}", where=str(path)) from None


def _load_graph(path: Path) -> Graph:
    return Graph.load(path)


def _resolve_source(source: Any, trial: int | None) -> _Source:
    if isinstance(source, Graph):
        if trial is not None:
            raise ExportError("trial= applies to a run directory, not to a Graph")
        source.analyse()
        return _Source(source, None, {}, {"kind": "graph", "path": source.source}, "untrained")
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
    graph = _load_graph(path)
    return _Source(graph, None, {}, {"kind": "graph", "path": str(path.resolve())}, "untrained")


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


def _from_folder(path: Path) -> _Source:
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
        manifest = _read_manifest(path)
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
                       if (isinstance(v, (int, float)) and not isinstance(v, bool)) or k in ("data", "device")}
            origin["kind"] = "training"
    return _Source(_load_graph(graph_path), _read_weights(weights_path), metrics, origin, state)


def _from_run(path: Path, trial: int | None) -> _Source:
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
    return _Source(_load_graph(folder / GRAPH_FILE), _read_weights(folder / WEIGHTS_FILE), metrics, origin, "trained")


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


def _with_input(graph: Graph, input_shape: Any) -> Graph:
    if input_shape is None:
        return graph
    if isinstance(input_shape, str):
        try:
            shape = tuple(int(d) for d in input_shape.lower().replace(",", "x").split("x") if d.strip())
        except ValueError:
            raise ExportError(f"input shape {input_shape!r}: expected CxHxW, e.g. 3x64x64") from None
    else:
        try:
            shape = tuple(int(d) for d in input_shape)
        except (TypeError, ValueError):
            raise ExportError(f"input shape {input_shape!r}: expected a sequence of ints, e.g. (3, 64, 64)") from None
    if not shape or any(d <= 0 for d in shape):
        raise ExportError(f"input shape {input_shape!r}: expected positive sizes, one per input dimension "
                          f"(without the batch), e.g. (3, 64, 64)")
    if len(shape) != len(graph.input_shape):
        raise ExportError(f"input shape {list(shape)} has {len(shape)} dimensions, graph {graph.name!r} takes "
                          f"{len(graph.input_shape)} ({'x'.join(map(str, graph.input_shape))})")
    if shape == graph.input_shape:
        return graph
    other = graph.copy()            # a copy analyses afresh
    other.input_shape = shape
    other.analyse()                 # a shape error names the node that cannot take the new input
    return other


def _build(src: _Source) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = src.graph.build()
    if src.weights is not None:
        load_state(model, src.weights, where=f"weights of graph {src.graph.name!r}")
    return model.eval()


def load_state(model: nn.Module, weights: Mapping[str, torch.Tensor], where: str) -> None:
    """Strict state-dict load; ExportError naming missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    shapes = [f"{k} {list(weights[k].shape)} (expected {list(own[k].shape)})" for k in own
              if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                shown = ", ".join(keys[:6]) + (f", ... ({len(keys)} in all)" if len(keys) > 6 else "")
                parts.append(f"{label}: {shown}")
        raise ExportError(f"do not fit the graph: {'; '.join(parts)}", where=where)
    try:
        model.load_state_dict(dict(weights), strict=True)
    except RuntimeError as exc:
        raise ExportError(f"do not fit the graph: {str(exc).splitlines()[0]}", where=where) from None


# -- export ---------------------------------------------------------------------------------------------------------


def _pick_formats(formats: str | Iterable[str] | None) -> tuple[list[ExporterSpec], dict[str, str]]:
    """The formats to write, and the default formats left out because a module they need is missing (name ->
    what to install). A format asked for by name that cannot be written is an error, never a silent skip."""
    skipped: dict[str, str] = {}
    if formats is None:
        specs = []
        for _, spec in EXPORTERS.items():
            if not spec.default:
                continue
            missing = spec.missing()
            if missing:
                skipped[spec.name] = f"needs {', '.join(missing)}: `{spec.install_hint}`"
            else:
                specs.append(spec)
    else:
        names = [f.strip() for f in formats.split(",")] if isinstance(formats, str) else [str(f) for f in formats]
        specs = [EXPORTERS.get(n) for n in names if n]
    if "weights" not in EXPORTERS:
        problems = "; ".join(EXPORTERS.problems()[:3])
        raise ExportError("format weights is not registered: the built-in exporters plugin "
                          "(nascore_plugins.exporters) is not loaded; reinstall nascore (`pip install -e .`)"
                          + (f" ({problems})" if problems else ""))
    weights = EXPORTERS.get("weights")
    ordered = [weights] + [s for s in specs if s.name != "weights"]
    unique: dict[str, ExporterSpec] = {}
    for spec in ordered:
        unique.setdefault(spec.name, spec)
    specs = list(unique.values())
    for spec in specs:
        missing = spec.missing()
        if missing:
            raise ExportError(f"format {spec.name} needs {', '.join(missing)}: `{spec.install_hint}`")
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.filename in seen:
            raise ExportError(f"formats {seen[spec.filename]} and {spec.name} both write {spec.filename!r}")
        seen[spec.filename] = spec.name
    return specs, skipped


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise ExportError("already exists; choose another folder or pass overwrite=True (--overwrite) to replace "
                          "it", where=str(out))
    if out.is_symlink() or not out.is_dir():
        raise ExportError("exists and is not a folder; not replacing it", where=str(out))
    if not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ExportError(f"is a non-empty folder without {MANIFEST}, not a nascore export; not replacing it",
                          where=str(out))


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` to ``out``; an existing ``out`` is set aside first and deleted only afterwards.

    Killed in the instant between the two renames, the previous export survives as ``.NAME.old-*`` beside ``out``.
    """
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out, old)
        try:
            os.rename(tmp, out)
        except BaseException:
            os.rename(old, out)
            raise
        _fsync_dir(out.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        try:
            os.rename(tmp, out)
        except OSError as exc:      # created meanwhile by someone else
            raise ExportError(f"cannot move the export into place: {exc.strerror}", where=str(out)) from None
        _fsync_dir(out.parent)


def _files(folder: Path) -> dict[str, dict[str, Any]]:
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            rel = path.relative_to(folder).as_posix()
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def export(source: str | Path | Graph, out: str | Path, formats: str | Iterable[str] | None = None,
           input_shape: Any = None, trial: int | None = None, overwrite: bool = False) -> Path:
    """Export a model to the folder ``out``; returns its path.

    ``source``: a run directory (its best model; ``trial=N`` picks trial N; for several objectives, the Pareto
    member with the best first objective), a folder holding ``graph.yaml`` and ``model.safetensors`` (a trial, a
    run's ``best/``, a ``nascore train`` output, an earlier export), or a graph YAML / :class:`~nascore.Graph`
    (freshly initialised weights: the manifest says ``"weights": "untrained"``).

    ``formats``: names or a comma-separated string (``"onnx,torchscript"``); None means every format whose
    requirements are installed; the manifest's ``skipped_formats`` names the others and what to install for them.
    ``weights`` (safetensors) is always written. ``input_shape`` (``(3, 64, 64)`` or
    ``"3x64x64"``) overrides the graph's input (the weights must still fit). An existing ``out`` is an error unless
    ``overwrite``; it is then replaced only once the new export is complete.
    """
    import nascore

    started = time.perf_counter()
    out = Path(out).absolute()
    specs, skipped = _pick_formats(formats)
    _check_target(out, overwrite)
    src = _resolve_source(source, trial)
    graph = _with_input(src.graph, input_shape)
    analysis = graph.analyse()
    model = _build(_Source(graph, src.weights, src.metrics, src.origin, src.weights_state))
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    example = torch.randn((EXAMPLE_BATCH, *graph.input_shape), generator=generator)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.export-", dir=out.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        (tmp / GRAPH_FILE).write_text(graph.to_yaml(), encoding="utf-8")
        infos: dict[str, Any] = {}
        for spec in specs:
            target = tmp / spec.filename
            t0 = time.perf_counter()
            try:
                with torch.no_grad():
                    info = spec.write(model, example, target, graph)
            except ExportError as err:
                raise err.located(f"format {spec.name}") from None
            except NascoreError:
                raise
            except Exception as exc:    # a format's failure becomes one clear error (the cause stays chained)
                text = str(exc).strip()
                raise ExportError(f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}",
                                  where=f"format {spec.name}") from exc
            if not target.is_file():
                raise ExportError(f"wrote no {spec.filename}", where=f"format {spec.name}")
            infos[spec.name] = {"file": spec.filename, **_jsonable(dict(info or {})),
                                "seconds": round(time.perf_counter() - t0, 3)}
        names = output_names(graph)
        manifest = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "nascore_version": nascore.__version__,
            "torch_version": torch.__version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "graph": {"name": graph.name, "hash": graph.structural_hash(), "params": analysis.params,
                      "macs": analysis.macs, "file": GRAPH_FILE},
            "weights": src.weights_state,
            "input_shape": list(graph.input_shape),
            "input": {"name": "input", "shape": ["batch", *graph.input_shape], "dtype": "float32"},
            "outputs": [{"name": name, "ref": str(ref), "shape": ["batch", *analysis.outputs[str(ref)]]}
                        for name, ref in zip(names, graph.outputs)],
            "metrics": _jsonable(src.metrics),
            "source": _jsonable(src.origin),
            "files": _files(tmp),
            "formats": infos,
            "skipped_formats": skipped,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if src.weights_state == "untrained":
            manifest["note"] = f"weights are a fresh initialisation (seed {UNTRAINED_SEED}), not trained"
        if tuple(graph.input_shape) != tuple(src.graph.input_shape):
            manifest["source"]["original_input_shape"] = list(src.graph.input_shape)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _fsync_tree(tmp)
        _check_target(out, overwrite)       # it may have appeared while we worked
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- verification and loading ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    kind: str        # "manifest" | "missing" | "checksum" | "graph"
    file: str | None
    message: str

    def __str__(self) -> str:
        return self.message


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise ExportError("no such export folder", where=str(folder))
    if not path.exists():
        raise ExportError("file not found: not a nascore export (or an unfinished one)", where=str(path))
    raw = read_bytes(path, ExportError, 16 << 20, "manifest")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"is corrupt: not valid JSON ({exc})", where=str(path)) from None
    if not isinstance(data, dict):
        raise ExportError(f"is corrupt: expected a JSON object, got {type(data).__name__}", where=str(path))
    if data.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"is not a nascore export manifest (format {data.get('format')!r}, expected "
                          f"{MANIFEST_FORMAT!r})", where=str(path))
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExportError(f"is corrupt: format_version {version!r}, expected an int >= 1", where=str(path))
    if version > MANIFEST_VERSION:
        raise ExportError(f"has format_version {version}; this nascore reads up to {MANIFEST_VERSION}: upgrade "
                          f"nascore", where=str(path))
    files = data.get("files")
    if not isinstance(files, dict):
        raise ExportError("is corrupt: 'files' is missing or not an object", where=str(path))
    for name, entry in files.items():
        if (not isinstance(name, str) or name.startswith("/") or ".." in Path(name).parts
                or not all(_PLAIN_NAME.match(part) for part in Path(name).parts) or name == MANIFEST):
            raise ExportError(f"is corrupt: file name {name!r} is not a plain name inside the folder", where=str(path))
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or not _HEX64.match(entry["sha256"]) or not isinstance(entry.get("bytes"), int)):
            raise ExportError(f"is corrupt: entry of {name!r} needs a sha256 (64 hex digits) and bytes (an int)",
                              where=str(path))
    for required in (GRAPH_FILE, WEIGHTS_FILE):
        if required not in files:
            raise ExportError(f"is corrupt: it lists no {required}", where=str(path))
    graph = data.get("graph")
    if not isinstance(graph, dict) or not isinstance(graph.get("hash"), str):
        raise ExportError("is corrupt: 'graph' needs a 'hash'", where=str(path))
    return data


def _check_files(folder: Path, manifest: Mapping[str, Any], hashed: Iterable[str] | None) -> list[_Problem]:
    """Every listed file exists with its recorded size; those in ``hashed`` (None: all) match their sha256."""
    problems = []
    hashed = None if hashed is None else set(hashed)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            problems.append(_Problem("missing", name, f"{path}: listed in {MANIFEST} but missing"))
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            problems.append(_Problem("checksum", name, f"{path}: {size} bytes, {MANIFEST} records {entry['bytes']} "
                                                       f"(truncated or modified)"))
            continue
        if hashed is None or name in hashed:
            digest = sha256_file(path)
            if digest != entry["sha256"]:
                problems.append(_Problem("checksum", name, f"{path}: sha256 {digest[:16]}... does not match "
                                                           f"{entry['sha256'][:16]}... recorded in {MANIFEST} "
                                                           f"(modified or corrupt)"))
    return problems


def _check_graph(folder: Path, manifest: Mapping[str, Any]) -> tuple[Graph | None, list[_Problem]]:
    path = folder / GRAPH_FILE
    try:
        graph = Graph.load(path)
        digest = graph.structural_hash()
    except NascoreError as err:
        return None, [_Problem("graph", GRAPH_FILE, f"{path}: cannot be loaded: {err}")]
    if digest != manifest["graph"]["hash"]:
        return graph, [_Problem("graph", GRAPH_FILE, f"{path}: structural hash {digest} differs from "
                                                     f"{manifest['graph']['hash']} recorded in {MANIFEST}")]
    return graph, []


def verify_export(folder: str | Path) -> list[str]:
    """Every problem of an export folder, as sentences naming the file (empty: it is intact).

    Checks the manifest's structure, that every listed file exists with its recorded size and sha256, and that
    ``graph.yaml`` loads (its blocks' plugins installed) and has the recorded structural hash.
    """
    folder = Path(folder)
    try:
        manifest = _read_manifest(folder)
    except ExportError as err:
        return [str(err)]
    problems = _check_files(folder, manifest, hashed=None)
    if not any(p.file == GRAPH_FILE for p in problems):
        problems += _check_graph(folder, manifest)[1]
    return [str(p) for p in problems]


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The export's manifest (structure checked; files not)."""
    return _read_manifest(Path(folder))


def load_model(folder: str | Path, verify: bool = True) -> nn.Module:
    """The exported model, rebuilt from ``graph.yaml`` with the weights of ``model.safetensors``, in eval mode.

    With ``verify`` (the default), the sha256 of graph.yaml and model.safetensors and the presence and size of every
    listed file are checked before anything is parsed: a mismatch is a :class:`ChecksumError` naming the file.
    Weights are read with safetensors (never pickle) and loaded strictly (an ExportError names mismatched keys).
    """
    folder = Path(folder)
    manifest = _read_manifest(folder)
    if verify:
        problems = _check_files(folder, manifest, hashed=(GRAPH_FILE, WEIGHTS_FILE))
        if problems:
            first = problems[0]
            error = ChecksumError if first.kind == "checksum" else ExportError
            more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
            raise error(f"{first.message}{more}")
        graph, problems = _check_graph(folder, manifest)
        if problems:
            raise ExportError(problems[0].message)
    else:
        graph = _load_graph(folder / GRAPH_FILE)
    weights = _read_weights(folder / WEIGHTS_FILE)
    model = graph.build()
    load_state(model, weights, where=str(folder / WEIGHTS_FILE))
    return model.eval()


__all__ = ["EXPORTERS", "ExporterSpec", "compare_outputs", "export", "exporter", "flatten_outputs", "load_model",
           "load_state", "output_names", "read_manifest", "sha256_file", "verify_export"]
