"""Pretrained weights in: another library's state dict loaded into the matching zoo graph, then exported.

The source libraries are data: each is a folder of the zoo, ``graphs/SOURCE/`` (``nascore.zoo`` when installed),
holding one name mapping per model, ``MODEL.yaml`` (MODEL as the library names it), written by
``benchmarks/make_SOURCE_reference.py``: the zoo graph it loads into, source module -> nascore module (the tensor name
after the last dot kept), key prefixes the graph leaves out (auxiliary heads), and source tensors stored in another
shape of the same values (a 1x1 convolution where the graph has a linear layer). Loading checks every tensor by name
and shape and refuses with an ExportError naming the first that does not fit, the first unexpected one, or the first
missing. Nothing is downloaded: the user brings the file.
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

_OPTIONAL = ("num_batches_tracked",)     # absent from files saved before PyTorch 0.4.1; BatchNorm starts it at 0


def zoo_dir() -> Path:
    """The zoo graphs: ``nascore/zoo`` when installed from a wheel, ``graphs/`` of a checkout otherwise."""
    here = Path(__file__).resolve().parents[1]
    for candidate in (here / "zoo", here.parent / "graphs"):
        if candidate.is_dir():
            return candidate
    raise ExportError("the model zoo (graphs/) is not installed with nascore; reinstall it")


def sources() -> list[str]:
    """The libraries weights can come from: the zoo's folders that hold mappings (torchvision, timm, ...)."""
    return sorted(p.name for p in zoo_dir().iterdir() if p.is_dir() and any(p.glob("*.yaml")))


def known_models(source: str) -> list[str]:
    """The models of ``source`` that have a mapping to a zoo graph (the library's names)."""
    return sorted(p.stem for p in (zoo_dir() / source).glob("*.yaml"))


@dataclass(frozen=True)
class WeightMap:
    """One zoo graph's names in another library: ``modules`` maps a source module to a nascore module; ``reshape``
    names the source tensors stored in another shape of the same values, with that shape."""

    source: str
    model: str
    modules: dict[str, str]
    ignore: tuple[str, ...] = ()
    note: str | None = None
    path: str = ""
    graph_name: str = ""
    reshape: dict[str, tuple[int, ...]] = field(default_factory=dict)
    inverse: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inverse", {v: k for k, v in self.modules.items()})
        if not self.graph_name:
            object.__setattr__(self, "graph_name", self.model)

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
        path = zoo_dir() / f"{self.graph_name}.yaml"
        if not path.is_file():
            raise ExportError(f"maps to zoo graph {self.graph_name!r}, which the zoo does not have", where=self.path)
        return Graph.load(path)


def load_mapping(source: str, model: str) -> WeightMap:
    """The mapping of ``source``'s ``model`` to its zoo graph; ExportError naming what is known otherwise."""
    known_sources = sources()
    if source not in known_sources:
        raise ExportError(f"unknown weights source {source!r}; known: {', '.join(known_sources)}"
                          f"{suggest(source, known_sources)}")
    known = known_models(source)
    if model not in known:
        raise ExportError(f"no {source} mapping for {model!r}; known: {', '.join(known)}{suggest(model, known)}")
    path = zoo_dir() / source / f"{model}.yaml"
    doc = read_yaml(path, ExportError)
    check_mapping(doc, ("graph", "source", "model", "ignore", "note", "reshape", "modules"), ExportError)
    modules = doc.get("modules")
    ignore = doc.get("ignore") or []
    reshape = doc.get("reshape") or {}
    if (not isinstance(modules, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in modules.items())
            or not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore)
            or not isinstance(reshape, Mapping)
            or not all(isinstance(k, str) and isinstance(v, list) and all(type(d) is int and d >= 0 for d in v)
                       for k, v in reshape.items())):
        raise ExportError("expected 'modules': a mapping of names to names, 'ignore': a list of prefixes and "
                          "'reshape': a mapping of tensor names to shapes", where=str(path))
    return WeightMap(source, model, dict(modules), tuple(ignore), doc.get("note"), str(path),
                     str(doc.get("graph", model)), {k: tuple(v) for k, v in reshape.items()})


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
        needed = mapping.reshape.get(key, tuple(expected.shape))
        if tuple(tensor.shape) != needed or tensor.numel() != expected.numel():
            raise ExportError(f"tensor {key!r} has shape {list(tensor.shape)} but {what} needs "
                              f"{list(needed)} there (nascore {target!r})", where=where)
        out[target] = tensor.detach().reshape(expected.shape).to(expected.dtype)
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
    """A nascore state dict under the source's names and shapes (the inverse of :func:`convert`, for tests and round
    trips)."""
    out = {}
    for key, value in state.items():
        name = mapping.source_key(key)
        out[name] = value.reshape(mapping.reshape[name]) if name in mapping.reshape else value
    return out


def pretrained_source(source: str, model: str, weights: str | Path) -> Source:
    """The zoo graph ``model`` with the state dict in ``weights`` (``source``'s names) loaded, as an export source."""
    mapping = load_mapping(source, model)
    graph = mapping.graph()
    own = graph.build().state_dict()
    converted = convert(mapping, read_state_dict(weights), own, where=str(weights))
    digest = hashlib.sha256(Path(weights).read_bytes()).hexdigest()
    origin = {"kind": "pretrained", "source": source, "model": model, "weights": str(Path(weights).resolve()),
              "weights_sha256": digest, "mapping": f"{source}/{model}.yaml"}
    if mapping.graph_name != model:
        origin["graph"] = mapping.graph_name
    if mapping.note:
        origin["note"] = mapping.note
    return Source(graph, converted, {}, origin, "pretrained")


def import_weights(source: str, model: str, weights: str | Path, out: str | Path,
                   formats: str | list[str] | None = None, input_shape: Any = None, overwrite: bool = False) -> Path:
    """Load ``weights`` (a ``source`` state dict of ``model``) into the zoo graph and export it to ``out``."""
    from nascore.exporting.package import export

    return export(pretrained_source(source, model, weights), out, formats=formats, input_shape=input_shape,
                  overwrite=overwrite)


__all__ = ["WeightMap", "convert", "import_weights", "known_models", "load_mapping", "pretrained_source",
           "read_state_dict", "sources", "to_source_names", "zoo_dir"]
