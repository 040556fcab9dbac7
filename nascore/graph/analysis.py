"""Validate a graph and infer every node's shapes, parameters and MACs, without allocating a single weight.

Order of checks: structure (cycles, unknown references, unreachable and dangling nodes), then per node in
topological order: block exists, parameters fit the schema, arity, input shapes (via the block's ``infer``, or
its module measured on the meta device when it has none). Every error is a NascoreError naming the file and node;
a plugin's bug is a PluginError naming the plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from nascore.blocks.estimate import inference_of
from nascore.blocks.registry import get_block
from nascore.errors import GraphError, NascoreError
from nascore.graph.core import INPUT, Graph, Ref
from nascore.blocks.spec import BlockSpec, Inference, Shape


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What analysis learned about one node."""

    name: str
    block: str
    spec: BlockSpec
    params: dict[str, Any]          # resolved: defaults filled, values normalised
    inputs: list[Ref]
    in_shapes: list[Shape]
    outputs: dict[str, Shape]
    n_params: int
    macs: int


@dataclass(frozen=True)
class Analysis:
    """A validated graph's totals and per-node facts (in topological order)."""

    input_shape: Shape
    nodes: dict[str, NodeInfo]
    outputs: dict[str, Shape]        # graph output ref -> shape
    params: int
    macs: int
    order: list[str] = field(default_factory=list)

    def shape_of(self, ref: Ref) -> Shape:
        if ref.node == INPUT:
            return self.input_shape
        outs = self.nodes[ref.node].outputs
        return outs[ref.output] if ref.output else next(iter(outs.values()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the CLI's ``--json``)."""
        return {
            "params": self.params,
            "macs": self.macs,
            "input": list(self.input_shape),
            "outputs": {name: list(shape) for name, shape in self.outputs.items()},
            "nodes": [{"name": n.name, "block": n.block, "inputs": [str(r) for r in n.inputs],
                       "outputs": {k: list(v) for k, v in n.outputs.items()}, "params": n.n_params, "macs": n.macs}
                      for n in self.nodes.values()],
        }


def topological_order(graph: Graph) -> list[str]:
    """Topological order that follows insertion order where it can; a cycle is a GraphError that prints it."""
    g = graph.nx
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        path = " -> ".join([str(edge[0]) for edge in cycle] + [str(cycle[0][0])])
        raise _at(graph, GraphError(f"the graph has a cycle: {path}"))
    position = {n: i for i, n in enumerate(g)}
    return [n for n in nx.lexicographical_topological_sort(g, key=position.__getitem__) if n != INPUT]


def analyse(graph: Graph, input_shape: Shape) -> Analysis:
    if not graph.nodes:
        raise _at(graph, GraphError("the graph has no nodes"))
    if not input_shape or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise _at(graph, GraphError(f"input shape {input_shape!r} is invalid: expected positive C, H, W"))
    order = topological_order(graph)
    _check_reachability(graph)
    nodes: dict[str, NodeInfo] = {}
    shapes: dict[str, dict[str, Shape]] = {INPUT: {"out": tuple(input_shape)}}
    total_params = total_macs = 0
    for name in order:
        attrs = graph.nx.nodes[name]
        try:
            spec = get_block(attrs["block"])
            params = spec.resolve(attrs["params"])
            refs = graph.inputs(name)
            if not spec.arity.accepts(len(refs)):
                raise GraphError(f"block {spec.name!r} takes {spec.arity.describe()}, got {len(refs)}")
            in_shapes = [_pick_output(ref, shapes[ref.node], graph) for ref in refs]
            inference = _infer(spec, in_shapes, params)
        except NascoreError as err:
            raise _at(graph, err, name) from None
        shapes[name] = inference.outputs
        nodes[name] = NodeInfo(name, attrs["block"], spec, params, refs, in_shapes, inference.outputs,
                               inference.params, inference.macs)
        total_params += inference.params
        total_macs += inference.macs
    outputs = {}
    for ref in graph.outputs:
        try:
            outputs[str(ref)] = _pick_output(ref, shapes[ref.node], graph)
        except NascoreError as err:
            raise _at(graph, err.located("graph outputs")) from None
    return Analysis(tuple(input_shape), nodes, outputs, total_params, total_macs, order)


def _infer(spec: BlockSpec, in_shapes: list[Shape], params: dict[str, Any]) -> Inference:
    """A block's formula, or its meta-device estimate when it has none (:func:`nascore.blocks.estimate.inference_of`).

    A ShapeError is the user's (the shapes do not fit); a formula that raises anything else or returns garbage is a
    PluginError naming the plugin and the block. Either is located at the node by the caller.
    """
    return inference_of(spec, in_shapes, params)


def _pick_output(ref: Ref, outs: dict[str, Shape], graph: Graph) -> Shape:
    if ref.output is None:
        if len(outs) > 1:
            names = ", ".join(f"{ref.node}:{o}" for o in outs)
            raise GraphError(f"node {ref.node!r} has several outputs; pick one of {names}")
        return next(iter(outs.values()))
    if ref.output not in outs:
        raise GraphError(f"node {ref.node!r} has no output {ref.output!r}; it has {', '.join(outs)}")
    return outs[ref.output]


def _check_reachability(graph: Graph) -> None:
    g = graph.nx
    reachable = nx.descendants(g, INPUT)
    for name in graph.nodes:
        if name not in reachable:
            raise _at(graph, GraphError("is unreachable: no path leads to it from the graph input"), name)
    output_nodes = {ref.node for ref in graph.outputs}
    used = set(output_nodes)
    for node in output_nodes:
        used |= nx.ancestors(g, node)
    for name in graph.nodes:
        if name not in used:
            raise _at(graph, GraphError("is dangling: its output feeds no node and is not a graph output"), name)


def _at(graph: Graph, err: NascoreError, node: str | None = None) -> NascoreError:
    return graph.locate(err, node)
