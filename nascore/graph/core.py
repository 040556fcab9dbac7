"""The architecture graph: a networkx multigraph of blocks with ordered inputs and named outputs.

A node carries a block name and the parameters the user gave (defaults are filled at analysis, so documents stay
short). An edge ``producer -> consumer`` has the consumer's input slot as its key and the producer's output name as
data. Nodes of a ``repeat`` stage share a ``stage`` attribute, which depth scaling and saving use. Analysis
(validation, shapes, params, MACs) is cached until the next mutation.

This module holds the data. What is done with a graph lives in sibling modules as free functions taking a Graph
(``analysis.analyse``, ``compile.build``, ``hashing.structural_hash``, ``scaling.scale``, ``document.load_graph``
...); Graph's methods of the same names are one-line conveniences over them. Those modules import this one, so
this one imports them once, at its end, after Graph is defined: the only place the circle is closed.
"""

from __future__ import annotations

import copy
import math
import re
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from nascore.errors import GraphError, NascoreError, suggest
from nascore.io.yamlio import dump_yaml

INPUT = "input"
MAX_NODES = 10_000  # a bound on hostile documents (1000 x repeat: 1000); real networks have hundreds
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to one output of a node: ``node`` (its only output) or ``node:output``."""

    node: str
    output: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Ref":
        node, _, output = text.partition(":")
        return cls(node, output or None)

    def __str__(self) -> str:
        return self.node if self.output is None else f"{self.node}:{self.output}"


class Graph:
    """An architecture: blocks (nodes) wired by ordered inputs, one image input, one or more outputs.

    Build one in Python (``add``), or from YAML (``Graph.load``); check it (``analyse``); turn it into a module
    (``build``); compare (``structural_hash``), mutate and scale it for search.
    """

    def __init__(self, name: str = "graph", input_shape: Iterable[int] = (3, 224, 224),
                 meta: Mapping[str, Any] | None = None):
        self.name = name
        self._input_shape = tuple(int(d) for d in input_shape)
        self.meta: dict[str, Any] = dict(meta or {})
        self.source: str | None = None  # file it was loaded from, for error messages
        self.nx = nx.MultiDiGraph()
        self.nx.add_node(INPUT, block=None, params={}, stage=None)
        self._outputs: list[Ref] | None = None  # None: the last node
        self._last: str | None = None           # the last node in insertion order (kept, not searched for)
        self._version = 0
        self._analysis: Any = None
        self._analysis_version = -1

    # construction --------------------------------------------------------------------------------------------------

    def add(self, name: str, block: str, inputs: str | Iterable[str] | None = None, *, stage: str | None = None,
            **params: Any) -> str:
        """Add a node; ``inputs`` defaults to the last node added (or the graph input). Returns the name."""
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == INPUT:
            raise GraphError(f"invalid node name {_short(name)}: expected letters, digits and '_' (dots only for repeats), "
                             f"not {INPUT!r}")
        if name in self.nx:
            raise GraphError(f"node {name!r} is defined twice")
        if len(self.nx) > MAX_NODES:
            raise GraphError(f"has more than {MAX_NODES} nodes; expected a network of a sensible size",
                             where=f"node {name!r}")
        if inputs is None:
            refs = [Ref(self.last_node() or INPUT)]
        else:
            refs = [Ref.parse(r) if isinstance(r, str) else r for r in ([inputs] if isinstance(inputs, str) else inputs)]
        self._check_refs(name, refs)
        self.nx.add_node(name, block=block, params=dict(params), stage=stage)
        self._connect(name, refs)
        self._last = name
        self._touch()
        return name

    def _check_refs(self, name: str, refs: list[Ref]) -> None:
        for slot, ref in enumerate(refs):
            if ref.node not in self.nx or ref.node == name:
                known = [n for n in self.nx if n != name]
                raise GraphError(f"input {slot} refers to unknown node {ref.node!r}{suggest(ref.node, known)}",
                                 where=f"node {name!r}")

    def _connect(self, name: str, refs: list[Ref]) -> None:
        for slot, ref in enumerate(refs):
            self.nx.add_edge(ref.node, name, key=slot, output=ref.output)

    def set_inputs(self, name: str, inputs: Iterable[str | Ref]) -> None:
        """Replace a node's inputs (in order)."""
        self._require(name)
        refs = [Ref.parse(r) if isinstance(r, str) else r for r in inputs]
        self._check_refs(name, refs)
        self.nx.remove_edges_from(list(self.nx.in_edges(name, keys=True)))
        self._connect(name, refs)
        self._touch()

    def set_outputs(self, outputs: Iterable[str | Ref] | None) -> None:
        """Declare the graph outputs (``None``: the last node)."""
        if outputs is None:
            self._outputs = None
        else:
            refs = [Ref.parse(r) if isinstance(r, str) else r for r in outputs]
            for ref in refs:
                if ref.node not in self.nx or ref.node == INPUT:
                    raise GraphError(f"graph output refers to unknown node {ref.node!r}{suggest(ref.node, self.nodes)}")
            self._outputs = refs
        self._touch()

    def _touch(self) -> None:
        self._version += 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """C, H, W of one sample; setting it drops the cached analysis."""
        return self._input_shape

    @input_shape.setter
    def input_shape(self, shape: Iterable[int]) -> None:
        self._input_shape = tuple(int(d) for d in shape)
        self._version = getattr(self, "_version", 0) + 1   # copy() sets it before the rest of the state

    def _require(self, name: str) -> None:
        if name not in self.nx or name == INPUT:
            raise GraphError(f"no node {name!r}{suggest(name, self.nodes)}")

    # views ---------------------------------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Node names in insertion order, without the graph input."""
        return [n for n in self.nx if n != INPUT]

    def last_node(self) -> str | None:
        return self._last

    @property
    def outputs(self) -> list[Ref]:
        if self._outputs is not None:
            return list(self._outputs)
        last = self.last_node()
        return [Ref(last)] if last else []

    @property
    def outputs_declared(self) -> bool:
        """Whether the outputs differ from the default (the last node): documents write them only then."""
        last = self.last_node()
        return self._outputs is not None and self._outputs != ([Ref(last)] if last else [])

    def block(self, name: str) -> str:
        self._require(name)
        return self.nx.nodes[name]["block"]

    def params(self, name: str) -> dict[str, Any]:
        """The parameters given for a node (a copy; defaults not filled)."""
        self._require(name)
        return dict(self.nx.nodes[name]["params"])

    def stage(self, name: str) -> str | None:
        return self.nx.nodes[name]["stage"]

    def inputs(self, name: str) -> list[Ref]:
        """A node's inputs in slot order."""
        edges = sorted(self.nx.in_edges(name, keys=True, data="output"), key=lambda e: e[2])
        return [Ref(src, out) for src, _, _, out in edges]

    def consumers(self, name: str) -> list[str]:
        return list(dict.fromkeys(dst for _, dst in self.nx.out_edges(name)))

    def stages(self) -> dict[str, list[str]]:
        """Stage name -> its nodes in order (the nodes a ``repeat`` expanded to)."""
        result: dict[str, list[str]] = {}
        for n in self.nodes:
            stage = self.nx.nodes[n]["stage"]
            if stage is not None:
                result.setdefault(stage, []).append(n)
        return result

    def __len__(self) -> int:
        return len(self.nx) - 1

    def __repr__(self) -> str:
        return f"Graph({self.name!r}, {len(self)} nodes, input {'x'.join(map(str, self.input_shape))})"

    def copy(self) -> "Graph":
        """An independent copy (search mutates copies)."""
        other = Graph.__new__(Graph)
        other.name, other.input_shape, other.meta, other.source = self.name, self.input_shape, copy.deepcopy(
            self.meta), self.source
        other.nx = self.nx.copy()
        for n in other.nx:
            other.nx.nodes[n]["params"] = dict(other.nx.nodes[n]["params"])
        other._outputs = None if self._outputs is None else list(self._outputs)
        other._last = self._last
        other._version, other._analysis, other._analysis_version = 0, None, -1
        return other

    # conveniences over the sibling modules (imported at the end of this module) ----------------------------------

    def analyse(self, input_shape: Iterable[int] | None = None):
        """Validate and infer every node's shapes, params and MACs without allocating weights (cached).

        Raises a NascoreError subclass naming the file and node on any problem.
        """
        if input_shape is not None and tuple(input_shape) != self.input_shape:
            return _analysis.analyse(self, tuple(input_shape))
        if self._analysis_version != self._version:
            self._analysis = _analysis.analyse(self, self.input_shape)
            self._analysis_version = self._version
        return self._analysis

    validate = analyse

    def build(self, drop_path_rate: float | None = None):
        """Compile to an ordinary ``torch.nn.Module`` (a torch.fx GraphModule with straight-line forward code)."""
        return _compile.build(self, drop_path_rate=drop_path_rate)

    def structural_hash(self) -> str:
        """Same network (whatever the node names or insertion order) -> same hash."""
        return _hashing.structural_hash(self)

    # documents -----------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, validate: bool = True) -> "Graph":
        """Read a YAML graph; validates it unless ``validate=False``."""
        return _document.load_graph(path, validate=validate)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], source: str = "<dict>", validate: bool = True) -> "Graph":
        graph = _document.graph_from_dict(doc, source)
        if validate:
            graph.analyse()
        return graph

    def to_dict(self) -> dict[str, Any]:
        return _document.graph_to_dict(self)

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())

    def save(self, path: str | Path) -> None:
        """Write YAML atomically (a temporary file, then rename)."""
        _document.save_graph(self, path)

    # mutation primitives (search uses them on copies) ---------------------------------------------------------------

    def set_param(self, name: str, key: str, value: Any) -> None:
        """Set one parameter of a node (validated at the next analysis)."""
        self._require(name)
        self.nx.nodes[name]["params"][key] = value
        self._touch()

    def swap_block(self, name: str, block: str, **params: Any) -> None:
        """Replace a node's block and parameters, keeping its wiring."""
        self._require(name)
        self.nx.nodes[name]["block"] = block
        self.nx.nodes[name]["params"] = dict(params)
        self._touch()

    def insert_after(self, after: str, name: str, block: str, *, reorder: bool = True, stage: str | None = None,
                     **params: Any) -> str:
        """Insert a single-input node behind ``after``; everything that read ``after`` now reads the new node.

        ``reorder=False`` leaves the new node last in insertion order (callers inserting many reorder once);
        ``stage`` makes it part of a ``repeat`` stage."""
        self._require(after)
        consumers = [(dst, key, out) for _, dst, key, out in self.nx.out_edges(after, keys=True, data="output")]
        outputs = self.outputs
        self.add(name, block, [after], stage=stage, **params)
        for dst, key, out in consumers:
            self.nx.remove_edge(after, dst, key)
            self.nx.add_edge(name, dst, key=key, output=None)
        self._outputs = [Ref(name) if r.node == after else r for r in outputs]
        if reorder:
            order = [n for n in self.nodes if n != name]
            order.insert(order.index(after) + 1, name)
            self.reorder(order)
        return name

    def remove(self, name: str) -> None:
        """Remove a single-input node from a chain; its consumers read its input instead."""
        self._require(name)
        ins = self.inputs(name)
        if len(ins) != 1:
            raise GraphError(f"cannot remove node {name!r}: it has {len(ins)} inputs, expected 1 (a chain link)")
        source = ins[0]
        consumers = [(dst, key) for _, dst, key in self.nx.out_edges(name, keys=True)]
        outputs = self.outputs
        self.nx.remove_node(name)
        if self._last == name:
            nodes = self.nodes
            self._last = nodes[-1] if nodes else None
        for dst, key in consumers:
            self.nx.add_edge(source.node, dst, key=key, output=source.output)
        self._outputs = [source if r.node == name else r for r in outputs]
        self._touch()

    def reorder(self, order: list[str]) -> None:
        """Change the insertion order (what saving and tie-breaking follow); wiring is untouched."""
        if sorted(order) != sorted(self.nodes):
            raise GraphError("reorder needs every node exactly once")
        data = {n: self.nx.nodes[n] for n in self.nx}
        edges = list(self.nx.edges(keys=True, data=True))
        fresh = nx.MultiDiGraph()
        for n in [INPUT, *order]:
            fresh.add_node(n, **data[n])
        fresh.add_edges_from(edges)
        self.nx = fresh
        self._last = order[-1] if order else None
        self._touch()

    # scaling -------------------------------------------------------------------------------------------------------

    def scale(self, width: float = 1.0, depth: float = 1.0, resolution: int | tuple[int, int] | None = None,
              divisor: int = 8) -> "Graph":
        """A compound-scaled copy, with EfficientNet's rounding rules.

        Channel parameters (those a block marks ``channels=True``) become ``make_divisible(c * width, divisor)``,
        never below 90% of ``c * width``; each ``repeat`` stage of n nodes gets ``ceil(n * depth)``; the input side
        becomes ``resolution``.
        """
        return _scaling.scale(self, width=width, depth=depth, resolution=resolution, divisor=divisor)

    def locate(self, err: NascoreError, node: str | None = None) -> NascoreError:
        """``err`` located at this graph's file and, when given, the node: how graph functions report errors."""
        where = f"node {node!r}" if node else None
        if where:
            err = err.located(where)
        return err.located(self.source) if self.source else err


def _short(value: Any) -> str:
    """A bounded repr for error messages: hostile values can be huge or deeply nested."""
    return reprlib.repr(value)


_STAGE_NODE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\.[0-9]+$")


def check_name(name: Any, where: str, allow_stage: bool = False) -> str:
    """A node name: an identifier, or ``stage.i`` for a repeat written out node by node."""
    if isinstance(name, str) and allow_stage and _STAGE_NODE.fullmatch(name):
        return name
    if not isinstance(name, str) or not _NAME.fullmatch(name) or "." in name or name == INPUT:
        raise GraphError(f"invalid node name {_short(name)}: expected letters, digits and '_', starting with a letter, "
                         f"not {INPUT!r}", where=where)
    return name


def ceil_repeats(n: int, depth: float) -> int:
    """EfficientNet's depth rule: repeats rounded up."""
    return int(math.ceil(n * depth))


# The stages, last: each imports this module for Graph, which exists by now (whichever module is imported first).
from nascore.graph import analysis as _analysis, compile as _compile, document as _document  # noqa: E402
from nascore.graph import hashing as _hashing, scaling as _scaling  # noqa: E402
