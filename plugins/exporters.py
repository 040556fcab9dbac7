"""nascore's built-in export formats: weights (safetensors), TorchScript, torch.export (.pt2) and ONNX.

Each format writes its file and then proves it: the file is loaded back (onnxruntime for ONNX) and run on the
example batch and on a batch of another size, and its outputs must match PyTorch's within ``|diff| <= ATOL + RTOL *
|expected|``; the largest absolute difference seen goes into the manifest. The batch dimension is exported dynamic;
where that fails, the format falls back to the example's batch size and the manifest says ``"batch": "static"``.

ONNX uses the torch.export-based exporter (``torch.onnx.export(..., dynamo=True)``, the default since PyTorch 2.9):
on PyTorch 2.13 it exports every graph of the zoo, while the legacy TorchScript-based exporter fails on torch.fx
GraphModules.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.errors import ExportError
from nascore.exporting.spec import (
    EXAMPLE_SEED,
    ExporterSpec,
    compare_outputs,
    flatten_outputs,
    output_names,
)
from nascore.graph.core import Graph
from nascore.ext.hookspec import hookimpl

ATOL = 1e-4
RTOL = 1e-3
CHECK_BATCH = 3            # a second batch size, to prove the batch dimension is really dynamic
ONNX_EXTERNAL_BYTES = 1536 << 20   # protobuf's 2 GiB limit: larger weights go to model.onnx.data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def _check(model: nn.Module, run: Callable[[torch.Tensor], Any], example: torch.Tensor, what: str,
           dynamic: bool = True) -> dict[str, Any]:
    """Compare ``run`` with ``model`` on the example batch, then (``dynamic``) on a batch of CHECK_BATCH.

    A mismatch is an ExportError; a failure on the second batch size only makes the batch static."""
    with torch.no_grad():
        worst = compare_outputs(flatten_outputs(model(example)), flatten_outputs(run(example)), ATOL, RTOL, what)
    info: dict[str, Any] = {"batch": "static", "checked_batches": [example.shape[0]]}
    if dynamic:
        generator = torch.Generator().manual_seed(EXAMPLE_SEED + 1)
        other = torch.randn((CHECK_BATCH, *example.shape[1:]), generator=generator)
        with torch.no_grad():
            expected = flatten_outputs(model(other))
            try:
                got = flatten_outputs(run(other))
            except Exception as exc:  # noqa: BLE001 - the format works, at the example's batch size only
                got = None
                info["note"] = f"fails on a batch of {CHECK_BATCH} ({_first_line(exc)}): batch fixed to " \
                               f"{example.shape[0]}"
        if got is not None:
            worst = max(worst, compare_outputs(expected, got, ATOL, RTOL, f"{what}, batch of {CHECK_BATCH}"))
            info["batch"] = "dynamic"
            info["checked_batches"].append(CHECK_BATCH)
    info.update(max_abs_error=worst, atol=ATOL, rtol=RTOL)
    return info


@contextlib.contextmanager
def _quiet(*loggers: str):
    """Silence the exporters' chatter (deprecation notes, "torchvision is not installed" warnings)."""
    saved = []
    for name in loggers:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)


# -- weights --------------------------------------------------------------------------------------------------------


def write_weights(model: nn.Module, example: torch.Tensor, path: Path, graph: Graph) -> dict[str, Any]:
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for key, value in model.state_dict().items():
        tensor = value.detach().to("cpu").contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset()) if tensor.numel() else None
        if ident is not None and ident in seen:      # safetensors refuses shared storage: tied weights are copied
            tensor = tensor.clone()
        elif ident is not None:
            seen.add(ident)
        state[key] = tensor
    save_file(state, str(path), metadata={"format": "pt", "graph_name": graph.name,
                                          "graph_hash": graph.structural_hash()})
    return {"tensors": len(state), "dtypes": sorted({str(t.dtype).removeprefix("torch.") for t in state.values()}),
            "load": "safetensors.torch.load_file + nascore.load_model (or Graph.load(graph.yaml).build())"}


# -- TorchScript ----------------------------------------------------------------------------------------------------


def write_torchscript(model: nn.Module, example: torch.Tensor, path: Path, graph: Graph) -> dict[str, Any]:
    info: dict[str, Any] = {}
    with _quiet():
        try:
            module = torch.jit.script(model)
            info["method"] = "script"
        except Exception as exc:  # noqa: BLE001 - scripting is the first choice, tracing the fallback
            module = torch.jit.trace(model, (example,), check_trace=False)
            info["method"] = "trace"
            info["script_error"] = _first_line(exc)
        torch.jit.save(module, str(path))
        loaded = torch.jit.load(str(path), map_location="cpu")
    loaded.eval()
    checked = _check(model, loaded, example, "TorchScript")
    if info["method"] == "trace":
        checked["note"] = (f"torch.jit.script failed, so the model was traced with a batch of {example.shape[0]}: "
                           f"input-dependent Python control flow is frozen. " + checked.get("note", "")).strip()
    return {**info, **checked, "load": "torch.jit.load(path)"}


# -- torch.export ---------------------------------------------------------------------------------------------------


def _batch_dim():
    return torch.export.Dim("batch", min=1)


def write_torch_export(model: nn.Module, example: torch.Tensor, path: Path, graph: Graph) -> dict[str, Any]:
    info: dict[str, Any] = {}
    with _quiet("torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes"):
        try:
            program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
            dynamic = True
        except Exception as exc:  # noqa: BLE001 - a dynamic batch is preferred, a fixed one is still useful
            program = torch.export.export(model, (example,))
            dynamic = False
            info["dynamic_error"] = _first_line(exc)
        torch.export.save(program, str(path))
        loaded = torch.export.load(str(path)).module()
    checked = _check(model, loaded, example, "torch.export", dynamic=dynamic)
    return {**info, **checked, "load": "torch.export.load(path).module()"}


# -- ONNX -----------------------------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    for p in path.parent.glob(f"{path.name}*"):
        if p.is_file():
            p.unlink()


def write_onnx(model: nn.Module, example: torch.Tensor, path: Path, graph: Graph) -> dict[str, Any]:
    import onnx
    import onnxruntime as ort

    names = output_names(graph)
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    external = weight_bytes > ONNX_EXTERNAL_BYTES
    kwargs = {"dynamo": True, "external_data": external, "verbose": False, "input_names": ["input"],
              "output_names": names}
    info: dict[str, Any] = {"exporter": "torch.onnx.export(dynamo=True)"}
    with _quiet("torch.onnx", "torch.export", "torch._export", "torch.fx.experimental.symbolic_shapes",
                "onnxscript"):
        try:
            torch.onnx.export(model, (example,), str(path), dynamic_shapes=({0: _batch_dim()},), **kwargs)
            dynamic = True
        except Exception as exc:  # noqa: BLE001 - a dynamic batch is preferred, a fixed one is still useful
            _remove(path)
            torch.onnx.export(model, (example,), str(path), **kwargs)
            dynamic = False
            info["dynamic_error"] = _first_line(exc)
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the ONNX checker rejects the file: {_first_line(exc)}") from None
    proto = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    del proto
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def run(x: torch.Tensor):
        return [torch.from_numpy(a) for a in session.run(None, {input_name: x.detach().numpy()})]

    checked = _check(model, run, example, "ONNX (onnxruntime)", dynamic=dynamic)
    info.update(opset=opset, onnxruntime=ort.__version__, external_data=external, input_names=[input_name],
                output_names=[o.name for o in session.get_outputs()], **checked,
                load="onnxruntime.InferenceSession(path)")
    return info


EXPORTERS = [
    ExporterSpec("weights", "model.safetensors", write_weights, aliases=("safetensors",),
                 doc="The weights as safetensors, for nascore.load_model (always written)."),
    ExporterSpec("torchscript", "model.ts", write_torchscript, aliases=("ts", "jit"),
                 doc="TorchScript (torch.jit.script, else trace): torch.jit.load, from Python or C++ (libtorch)."),
    ExporterSpec("torch_export", "model.pt2", write_torch_export, aliases=("pt2",),
                 doc="torch.export ExportedProgram: torch.export.load(path).module(); AOTInductor's input."),
    ExporterSpec("onnx", "model.onnx", write_onnx, requires=("onnx", "onnxscript", "onnxruntime"),
                 install="pip install nascore[onnx]",
                 doc="ONNX via torch.onnx's dynamo exporter, verified against PyTorch with onnxruntime."),
]


@hookimpl
def nascore_exporters():
    return list(EXPORTERS)
