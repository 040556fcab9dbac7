"""The graph YAML format: reading (with ``repeat`` expansion) and writing (re-folding repeats), round-trip exact.

    name: resnet18
    input: [3, 224, 224]
    nodes:
      - {name: stem, block: conv_bn_act, out: 64, kernel: 7, stride: 2}
      - {name: layer1, block: resnet_basic, repeat: 2, out: 64}     # layer1.0, layer1.1; only .0 gets a stride
      - {name: fc, block: linear, out: 1000}
    outputs: [fc]                                                   # optional: default the last node

Inputs default to the previous entry; ``inputs: [a, b]`` names them, ``node:output`` picks a named output, a stage
name means its last node, ``input`` is the graph input.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nascore.errors import DocumentError, GraphError, NascoreError
from nascore.graph.core import INPUT, Graph, Ref, check_name
from nascore.blocks.spec import RESERVED_KEYS, is_int
from nascore.io.atomic import atomic_write_text
from nascore.io.yamlio import check_mapping, dump_yaml, read_yaml

TOP_KEYS = ("name", "description", "input", "nodes", "outputs", "meta")
MAX_REPEAT = 1000
__all__ = ["load_graph", "graph_from_dict", "graph_to_dict", "save_graph", "dump_yaml"]


def load_graph(path: str | Path, validate: bool = True) -> Graph:
    doc = read_yaml(path)
    graph = graph_from_dict(doc, str(path))
    if validate:
        graph.analyse()
    return graph


def save_graph(graph: Graph, path: str | Path) -> None:
    atomic_write_text(path, dump_yaml(graph_to_dict(graph)))


def graph_from_dict(doc: Any, source: str = "<dict>") -> Graph:
    """Build a Graph from a parsed document; structural errors name the source and the entry."""
    try:
        return _from_dict(doc, source)
    except NascoreError as err:
        if err.where and err.where.startswith(source):
            raise
        raise err.located(source) from None


def _from_dict(doc: Any, source: str) -> Graph:
    check_mapping(doc, TOP_KEYS, DocumentError)
    name = doc.get("name", Path(source).stem if source != "<dict>" else "graph")
    if not isinstance(name, str):
        raise DocumentError(f"'name' must be a string, got {name!r:.40}")
    input_shape = _input_shape(doc.get("input", [3, 224, 224]))
    meta = doc.get("meta", {})
    if not isinstance(meta, Mapping):
        raise DocumentError(f"'meta' must be a mapping, got {type(meta).__name__}")
    meta = dict(meta)
    if "description" in doc:
        meta["description"] = doc["description"]
    graph = Graph(name, input_shape, meta)
    graph.source = source
    entries = doc.get("nodes")
    if not isinstance(entries, list) or not entries:
        raise DocumentError("'nodes' must be a non-empty list of node mappings")
    last_of_stage: dict[str, str] = {}
    for index, entry in enumerate(entries):
        try:
            _add_entry(graph, entry, index, last_of_stage)
        except GraphError as err:   # an input not defined (yet): one defined later is said as such, a cycle shown
            raise (_forward_reference(entries, index) if "unknown node" in err.message else None) or err
    outputs = doc.get("outputs")
    if outputs is not None:
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, list) or not outputs or not all(isinstance(o, str) for o in outputs):
            raise DocumentError(f"'outputs' must be a list of node references, got {outputs!r:.60}")
        graph.set_outputs([_resolve(Ref.parse(o), last_of_stage) for o in outputs])
    return graph


def _input_shape(value: Any) -> tuple[int, ...]:
    if is_int(value):
        value = [value]
    if (not isinstance(value, list) or not 1 <= len(value) <= 3
            or not all(is_int(d) and 0 < d <= 1 << 16 for d in value)):
        raise DocumentError(f"'input' must be [C, H, W] of positive ints, got {value!r:.60}")
    return tuple(value)


def _add_entry(graph: Graph, entry: Any, index: int, last_of_stage: dict[str, str]) -> None:
    where = f"nodes[{index}]"
    if not isinstance(entry, Mapping):
        raise DocumentError(f"expected a mapping with 'name' and 'block', got {entry!r:.60}", where=where)
    name = entry.get("name")
    if name is None:
        raise DocumentError("missing 'name'", where=where)
    name = check_name(name, where, allow_stage=True)
    stage = name.rsplit(".", 1)[0] if "." in name else None  # an unfolded repeat written node by node
    where = f"node {name!r}"
    block = entry.get("block")
    if not isinstance(block, str):
        raise DocumentError(f"'block' must be a block name, got {block!r:.40}", where=where)
    if name in graph.nx or name in last_of_stage or (stage is not None and stage in graph.nx):
        raise GraphError("is defined twice (as a node and as a stage)", where=where)
    params = {k: v for k, v in entry.items() if k not in RESERVED_KEYS}
    for key in params:
        if not isinstance(key, str):
            raise DocumentError(f"parameter names must be strings, got {key!r}", where=where)
    inputs = entry.get("inputs")
    if inputs is not None:
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(r, str) for r in inputs):
            raise DocumentError(f"'inputs' must be a node name or a list of them, got {inputs!r:.60}", where=where)
        refs = [_resolve(Ref.parse(r), last_of_stage) for r in inputs]
    else:
        refs = None
    repeat = entry.get("repeat")
    if repeat is None:
        graph.add(name, block, refs, stage=stage, **params)
        if stage is not None:
            last_of_stage[stage] = name
        return
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= MAX_REPEAT:
        raise DocumentError(f"'repeat' must be an int in [1, {MAX_REPEAT}], got {repeat!r:.40}", where=where)
    rest = dict(params)
    if "stride" in rest:
        rest["stride"] = 1
    for i in range(repeat):
        graph.add(f"{name}.{i}", block, refs if i == 0 else None, stage=name, **(params if i == 0 else rest))
    last_of_stage[name] = f"{name}.{repeat - 1}"


def _forward_reference(entries: list[Any], index: int) -> GraphError | None:
    """Node ``index`` failed to take an input it names: when that input is defined later in the document, say so,
    and print the cycle when following the inputs from there comes back to the node (None: not this case)."""
    inputs: dict[str, list[str]] = {}     # each well-formed entry (and its stage) -> the names it takes input from
    order: list[str] = []
    previous = INPUT
    for entry in entries:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            return None
        refs = entry.get("inputs", [previous])
        refs = [refs] if isinstance(refs, str) else refs
        if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
            return None
        inputs[name] = [Ref.parse(r).node for r in refs]
        if "." in name:
            inputs.setdefault(name.rsplit(".", 1)[0], []).append(name)   # a stage written node by node
        order.append(name)
        previous = name
    me = order[index] if index < len(order) else None
    if me is None:
        return None
    if me in inputs[me]:
        path: list[str] | None = [me]
        later = [me]
    else:
        later = [n for n in inputs[me] if n in inputs and n not in order[:index]]
        if not later:
            return None
        path = _path(later[0], me, inputs)
    if path is not None:
        cycle = " -> ".join([me, *path])
        return GraphError(f"its inputs form a cycle: {cycle} (each arrow: takes input from); a network is acyclic: "
                          "every node's inputs must come before it", where=f"node {me!r}")
    return GraphError(f"takes input from {later[0]!r}, which is defined later in the document; expected inputs "
                      f"defined before the node that takes them (move {later[0]!r} up)", where=f"node {me!r}")


def _path(start: str, goal: str, inputs: dict[str, list[str]]) -> list[str] | None:
    """Names from ``start`` to ``goal`` following inputs (depth first, each name once), or None."""
    stack, came = [start], {start: None}
    while stack:
        name = stack.pop()
        if name == goal:
            path = []
            while name is not None:
                path.append(name)
                name = came[name]
            return path[::-1]
        for nxt in inputs.get(name, ()):
            if nxt not in came:
                came[nxt] = name
                stack.append(nxt)
    return None


def _resolve(ref: Ref, last_of_stage: dict[str, str]) -> Ref:
    return Ref(last_of_stage[ref.node], ref.output) if ref.node in last_of_stage else ref


# -- writing --------------------------------------------------------------------------------------------------------


def graph_to_dict(graph: Graph) -> dict[str, Any]:
    """The document for ``graph``; repeats re-fold where the nodes still follow the repeat pattern."""
    doc: dict[str, Any] = {"name": graph.name}
    meta = dict(graph.meta)
    if "description" in meta:
        doc["description"] = meta.pop("description")
    doc["input"] = list(graph.input_shape)
    stages = graph.stages()
    last_name = {nodes[-1]: stage for stage, nodes in stages.items()}
    entries: list[dict[str, Any]] = []
    previous: str = INPUT
    order = graph.nodes
    i = 0
    while i < len(order):
        name = order[i]
        stage = graph.stage(name)
        group = stages.get(stage, [name]) if stage is not None else [name]
        if stage is not None and group[0] == name and _folds(graph, group):
            entry = _entry(graph, stage, group[0], previous, last_name)
            entry = {"name": stage, "block": entry.pop("block"), "repeat": len(group), **entry}
            entries.append(entry)
            previous = group[-1]
            i += len(group)
            continue
        entries.append(_entry(graph, name, name, previous, last_name))
        previous = name
        i += 1
    doc["nodes"] = entries
    if graph.outputs_declared:
        doc["outputs"] = [_ref_text(r, last_name) for r in graph.outputs]
    if meta:
        doc["meta"] = meta
    return doc


def _entry(graph: Graph, written_name: str, node: str, previous: str, last_name: dict[str, str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": written_name, "block": graph.block(node)}
    refs = graph.inputs(node)
    if refs != [Ref(previous)]:
        texts = [_ref_text(r, last_name) for r in refs]
        entry["inputs"] = texts[0] if len(texts) == 1 else texts
    entry.update(_plain(graph.params(node)))
    return entry


def _folds(graph: Graph, group: list[str]) -> bool:
    """Nodes can be written as one ``repeat`` entry: same block, chained, params as the expansion would make."""
    first = graph.params(group[0])
    if any(f"{graph.stage(group[0])}.{i}" != n for i, n in enumerate(group)):
        return False
    rest = dict(first)
    if "stride" in rest:
        rest["stride"] = 1
    internal = set(group[:-1])
    outputs = {r.node for r in graph.outputs}
    for prev, node in zip(group, group[1:]):
        if graph.block(node) != graph.block(group[0]) or graph.params(node) != rest:
            return False
        if graph.inputs(node) != [Ref(prev)]:
            return False
    for node in internal:
        if graph.consumers(node) != [group[group.index(node) + 1]] or node in outputs:
            return False
    return True


def _ref_text(ref: Ref, last_name: dict[str, str]) -> str:
    node = last_name.get(ref.node, ref.node)
    return node if ref.output is None else f"{node}:{ref.output}"


def _plain(value: Any) -> Any:
    """Tuples -> lists so YAML stays plain."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
