"""Pretrained weights in: another library's state dict loaded into the matching zoo graph, then exported.

A name mapping per zoo graph is data, ``graphs/SOURCE/MODEL.yaml`` (``nascore.zoo`` when installed), written by
``benchmarks/make_torchvision_reference.py``: torchvision module -> nascore module, the tensor name after the last
dot kept, plus key prefixes the graph leaves out (auxiliary heads). Loading checks every tensor by name and shape
and refuses with an ExportError naming the first that does not fit, the first unexpected one, or the first missing.
Nothing is downloaded: the user brings the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nascore.errors import ExportError, suggest
from nascore.exporting.sources import Source
from nascore.graph.core import Graph
from nascore.io.yamlio import check_mapping, read_yaml

SOURCES = ("torchvision",)
_OPTIONAL = ("num_batches_tracked",)     # absent from files saved before PyTorch 0.4.1; BatchNorm starts it at 0


def zoo_dir() -> Path:
    """The zoo graphs: ``nascore/zoo`` when installed from a wheel, ``graphs/`` of a checkout otherwise."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "zoo", here.parent / "graphs"):
        if candidate.is_dir():
            return candidate
    raise ExportError("the model zoo (graphs/) is not installed with nascore; reinstall it")


def known_models(source: str) -> list[str]:
    """Zoo graphs that have a mapping from ``source``."""
    return sorted(p.stem for p in (zoo_dir() / source).glob("*.yaml"))


@dataclass(frozen=True)
class WeightMap:
    """One zoo graph's names in another library: ``modules`` maps a source module to a nascore module."""

    source: str
    model: str
    modules: dict[str, str]
    ignore: tuple[str, ...] = ()
    note: str | None = None
    path: str = ""
    inverse: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inverse", {v: k for k, v in self.modules.items()})

    def target(self, key: str) -> str | None:
        """The nascore key of a source tensor, or None when the graph has no such tensor."""
        module, dot, leaf = key.rpartition(".")
        mapped = self.modules.get(module) if dot else None
        return f"{mapped}.{leaf}" if mapped is not None else None

    def source_key(self, key: str) -> str | None:
        """The source name of a nascore tensor (the inverse of :meth:`target`)."""
        module, _, leaf = key.rpartition(".")
        mapped = self.inverse.get(module)
        return f"{mapped}.{leaf}" if mapped is not None else None

    def ignored(self, key: str) -> bool:
        return key.startswith(self.ignore)

    def graph(self) -> Graph:
        return Graph.load(zoo_dir() / f"{self.model}.yaml")


def load_mapping(source: str, model: str) -> WeightMap:
    """The mapping of zoo graph ``model`` from library ``source``; ExportError naming what is known otherwise."""
    if source not in SOURCES:
        raise ExportError(f"unknown weights source {source!r}; known: {', '.join(SOURCES)}{suggest(source, SOURCES)}")
    known = known_models(source)
    if model not in known:
        raise ExportError(f"no {source} mapping for {model!r}; known: {', '.join(known)}{suggest(model, known)}")
    path = zoo_dir() / source / f"{model}.yaml"
    doc = read_yaml(path, ExportError)
    check_mapping(doc, ("graph", "source", "model", "ignore", "note", "modules"), ExportError)
    modules = doc.get("modules")
    ignore = doc.get("ignore") or []
    if (not isinstance(modules, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in modules.items())
            or not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore)):
        raise ExportError("expected 'modules': a mapping of names to names and 'ignore': a list of prefixes",
                          where=str(path))
    return WeightMap(source, str(doc.get("graph", model)), dict(modules), tuple(ignore), doc.get("note"), str(path))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``: safetensors, or a PyTorch file read with ``weights_only=True`` (no code runs).
    A checkpoint that wraps it under ``state_dict`` or ``model`` is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise ExportError("file not found", where=str(path))
    if path.suffix == ".safetensors":
        from nascore.exporting.verify import read_weights

        return read_weights(path)
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds; all mean "not a weights file"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"is not a PyTorch weights file that loads with weights_only=True: {first}",
                          where=str(path)) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                for k, v in data.items()):
        raise ExportError("holds no state dict (a mapping of names to tensors)", where=str(path))
    return dict(data)


def convert(mapping: WeightMap, state: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor],
            where: str) -> dict[str, torch.Tensor]:
    """``state`` (source names) renamed to nascore's ``own`` keys, each checked by shape and cast to its dtype.

    Refuses with an ExportError naming the first source tensor that does not fit (shape), is not part of the model,
    or, after all were read, the first tensor of the model the file lacks."""
    what = f"{mapping.source}'s {mapping.model}"
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if mapping.ignored(key):
            continue
        target = mapping.target(key)
        if target is None or target not in own:
            raise ExportError(f"tensor {key!r} is not part of {what}{suggest(key, _source_keys(mapping, own))}",
                              where=where)
        expected = own[target]
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ExportError(f"tensor {key!r} has shape {list(tensor.shape)} but {what} needs "
                              f"{list(expected.shape)} there (nascore {target!r})", where=where)
        out[target] = tensor.detach().to(expected.dtype)
    for target, expected in own.items():
        if target in out:
            continue
        if target.rpartition(".")[2] in _OPTIONAL:
            out[target] = torch.zeros_like(expected)
            continue
        raise ExportError(f"tensor {mapping.source_key(target)!r} of {what} is missing (nascore {target!r})",
                          where=where)
    return out


def _source_keys(mapping: WeightMap, own: Mapping[str, torch.Tensor]) -> list[str]:
    return [k for k in (mapping.source_key(t) for t in own) if k is not None]


def to_source_names(mapping: WeightMap, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A nascore state dict under the source's names (the inverse of :func:`convert`, for tests and round trips)."""
    return {mapping.source_key(k): v for k, v in state.items()}


def pretrained_source(source: str, model: str, weights: str | Path) -> Source:
    """The zoo graph ``model`` with the state dict in ``weights`` (``source``'s names) loaded, as an export source."""
    mapping = load_mapping(source, model)
    graph = mapping.graph()
    own = graph.build().state_dict()
    converted = convert(mapping, read_state_dict(weights), own, where=str(weights))
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    origin = {"kind": "pretrained", "source": source, "model": model, "weights": str(Path(weights).resolve()),
              "weights_sha256": digest, "mapping": f"{source}/{model}.yaml"}
    if mapping.note:
        origin["note"] = mapping.note
    return Source(graph, converted, {}, origin, "pretrained")


def import_weights(source: str, model: str, weights: str | Path, out: str | Path,
                   formats: str | list[str] | None = None, input_shape: Any = None, overwrite: bool = False) -> Path:
    """Load ``weights`` (a ``source`` state dict of ``model``) into the zoo graph and export it to ``out``."""
    from nascore.exporting.package import export

    return export(pretrained_source(source, model, weights), out, formats=formats, input_shape=input_shape,
                  overwrite=overwrite)


__all__ = ["SOURCES", "WeightMap", "convert", "import_weights", "known_models", "load_mapping", "pretrained_source",
           "read_state_dict", "to_source_names", "zoo_dir"]
