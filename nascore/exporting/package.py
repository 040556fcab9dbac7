"""Export a trained (or fresh) architecture as a self-describing, checksummed folder.

    OUT/graph.yaml          the concrete architecture (always)
    OUT/model.safetensors   the weights (always; format ``weights``)
    OUT/model.ts            TorchScript (format ``torchscript``): ``torch.jit.load``, no nascore needed
    OUT/model.pt2           torch.export (format ``torch_export``): ``torch.export.load``, no nascore needed
    OUT/model.onnx          ONNX (format ``onnx``), checked against PyTorch with onnxruntime
    OUT/manifest.json       versions, graph hash / params / MACs, input and output shapes, the run's metrics, where
                            it came from, and the sha256 and size of every other file

Formats are plugins (:mod:`nascore.exporting.spec`); what can be exported is resolved by
:mod:`nascore.exporting.sources`; :mod:`nascore.exporting.verify` checks an export and loads it back.

An export is written into a hidden temporary folder beside ``out`` and renamed into place when complete
(:func:`nascore.io.atomic.atomic_dir`): an interrupted or failing export leaves no half model and never replaces a
good ``out`` with a broken one. Before that, the model runs the example batch once, node by node
(:func:`nascore.graph.agreement.run_once`): a node that fails, or whose output shapes or parameter count differ from
the analysis the manifest reports, is an EstimateMismatch naming it, and nothing is written.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.errors import ExportError, plugin_code
from nascore.exporting.sources import resolve_source
from nascore.exporting.spec import (
    EXAMPLE_BATCH,
    EXAMPLE_SEED,
    EXPORTERS,
    GRAPH_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    UNTRAINED_SEED,
    ExporterSpec,
    output_names,
    sha256_file,
)
from nascore.exporting.verify import check_written_by_nascore, load_state
from nascore.graph.agreement import run_once
from nascore.graph.core import Graph
from nascore.io.atomic import atomic_dir


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


MAX_TENSOR_BYTES = 1 << 30   # an export runs the model on an example batch: its largest tensor at most 1 GiB


def _check_runnable(graph: Graph, analysis: Any) -> None:
    """Refuse (one ExportError) an input so large that running the example batch would exhaust memory: the example
    input and every node's output, for a batch of EXAMPLE_BATCH float32 samples, must each fit MAX_TENSOR_BYTES."""
    largest = ("input", tuple(graph.input_shape))
    for name, node in analysis.nodes.items():
        for shape in node.outputs.values():
            if math.prod(shape) > math.prod(largest[1]):
                largest = (f"node {name!r}", tuple(shape))
    need = EXAMPLE_BATCH * 4 * math.prod(largest[1])
    if need > MAX_TENSOR_BYTES:
        raise ExportError(f"input {'x'.join(map(str, graph.input_shape))} is too large to export: an export runs the "
                          f"model on a batch of {EXAMPLE_BATCH}, whose largest tensor ({largest[0]}, "
                          f"{'x'.join(map(str, (EXAMPLE_BATCH, *largest[1])))}) would take {need / 2**30:.1f} GiB; "
                          f"expected at most {MAX_TENSOR_BYTES / 2**30:.0f} GiB: give a smaller --input",
                          where=f"graph {graph.name!r}")


def _build(graph: Graph, weights: Mapping[str, torch.Tensor] | None) -> nn.Module:
    """The model in eval mode: ``weights`` loaded strictly, or (None) a fresh initialisation of a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        model = graph.build()
    if weights is not None:
        load_state(model, weights, where=f"weights of graph {graph.name!r}")
    return model.eval()


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


def check_target(out: str | Path, overwrite: bool = False) -> None:
    """Whether an export may be written to ``out`` (before any work: ``search --export``, ``train --export``): an
    ExportError when it exists and may not be replaced (see :func:`export`)."""
    _check_target(Path(out).absolute(), overwrite)


def _check_target(out: Path, overwrite: bool) -> None:
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise ExportError("already exists; choose another folder or pass overwrite=True (--overwrite) to replace "
                          "it", where=str(out))
    if out.is_symlink() or not out.is_dir():
        raise ExportError("exists and is not a folder; not replacing it", where=str(out))
    check_written_by_nascore(out, out)


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
    ``overwrite``; it is then replaced only once the new export is complete, and only when it is empty or provably
    an export nascore wrote (a valid manifest, exactly the files it lists, each with its recorded sha256): anything
    else is an ExportError naming the first foreign file, and nothing is deleted.
    """
    import nascore

    started = time.perf_counter()
    out = Path(out).absolute()
    specs, skipped = _pick_formats(formats)
    _check_target(out, overwrite)
    src = resolve_source(source, trial)
    graph = _with_input(src.graph, input_shape)
    analysis = graph.analyse()
    _check_runnable(graph, analysis)
    model = _build(graph, src.weights)
    generator = torch.Generator().manual_seed(EXAMPLE_SEED)
    example = torch.randn((EXAMPLE_BATCH, *graph.input_shape), generator=generator)
    run_once(graph, model, example, analysis)   # before anything is written: the model runs and matches its estimate
    try:
        # the folder set aside is proved nascore's again after the rename: nothing added since the check is lost
        replace = (lambda old: check_written_by_nascore(old, out)) if overwrite else False
        with atomic_dir(out, replace=replace) as folder:
            (folder / GRAPH_FILE).write_text(graph.to_yaml(), encoding="utf-8")
            infos = {spec.name: _write_format(spec, folder, model, example, graph) for spec in specs}
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
                "files": _files(folder),
                "formats": infos,
                "skipped_formats": skipped,
                "seconds": round(time.perf_counter() - started, 3),
            }
            if src.weights_state == "untrained":
                manifest["note"] = f"weights are a fresh initialisation (seed {UNTRAINED_SEED}), not trained"
            if tuple(graph.input_shape) != tuple(src.graph.input_shape):
                manifest["source"]["original_input_shape"] = list(src.graph.input_shape)
            (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            _check_target(out, overwrite)       # it may have appeared while we worked
    except FileExistsError as exc:              # created meanwhile by someone else
        raise ExportError(f"cannot move the export into place: {exc.strerror}", where=str(out)) from None
    return out


def _write_format(spec: ExporterSpec, folder: Path, model: nn.Module, example: torch.Tensor,
                  graph: Graph) -> dict[str, Any]:
    """Write one format into ``folder``; its manifest entry. A format's failure becomes one clear ExportError."""
    target = folder / spec.filename
    t0 = time.perf_counter()
    try:
        # the location names whose code failed; a bug's cause stays chained (exporters fail deep inside torch)
        with plugin_code(None, ExportError, chain=True), torch.no_grad():
            info = spec.write(model, example, target, graph)
    except ExportError as err:
        raise err.located(f"format {spec.name}") from err.__cause__
    if not target.is_file():
        raise ExportError(f"wrote no {spec.filename}", where=f"format {spec.name}")
    return {"file": spec.filename, **_jsonable(dict(info or {})), "seconds": round(time.perf_counter() - t0, 3)}


__all__ = ["MAX_TENSOR_BYTES", "check_target", "export"]
