"""What an export format is (:class:`ExporterSpec`, registry :data:`EXPORTERS`), the names of an export folder's
files, and helpers for writing a format.

Formats are plugins (hook ``nascore_exporters``); the built-in ones live in ``nascore_plugins.exporters``. Every
format takes a batch of any size (the batch dimension is exported dynamic; a format that cannot do so says
``"batch": "static"`` in the manifest).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.errors import ExportError
from nascore.ext.registry import Registry
from nascore.graph.core import Graph

MANIFEST = "manifest.json"
GRAPH_FILE = "graph.yaml"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FORMAT = "nascore-export"
MANIFEST_VERSION = 1
EXAMPLE_BATCH = 2          # torch.export specialises sizes 0 and 1: a batch of 2 lets the batch dimension stay dynamic
EXAMPLE_SEED = 0
UNTRAINED_SEED = 0
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")   # a file name an export may hold
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
        if not isinstance(self.filename, str) or not PLAIN_NAME.match(self.filename) or self.filename in _RESERVED:
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


__all__ = ["EXAMPLE_BATCH", "EXAMPLE_SEED", "EXPORTERS", "ExporterSpec", "GRAPH_FILE", "MANIFEST", "WEIGHTS_FILE",
           "compare_outputs", "exporter", "flatten_outputs", "output_names", "sha256_file"]
