"""Compound scaling of a graph (EfficientNet): width, depth, resolution, with the paper's rounding rules.

A pure function from graph to graph, like timm's builder: the blocks never see a multiplier.
"""

from __future__ import annotations

from nascore.blocks.registry import get_block
from nascore.errors import GraphError, NascoreError, ParamError
from nascore.graph.core import MAX_NODES, Graph, ceil_repeats
from nascore.blocks.layers import make_divisible
from nascore.blocks.spec import is_int


def scale(graph: Graph, width: float = 1.0, depth: float = 1.0, resolution=None, divisor: int = 8) -> Graph:
    for name, value in (("width", width), ("depth", depth)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 64:
            raise ParamError(f"got {value!r}, expected a float in (0, 64]", where=f"scale {name}")
    scaled = graph.copy()
    if width != 1.0:
        _scale_width(scaled, float(width), divisor)
    if depth != 1.0:
        _scale_depth(scaled, float(depth))
    if resolution is not None:
        size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
        if len(size) != 2 or not all(isinstance(d, int) and d > 0 for d in size):
            raise ParamError(f"got {resolution!r}, expected a positive int or [H, W]", where="scale resolution")
        scaled.input_shape = (scaled.input_shape[0], *size)
    return scaled


def _scale_width(graph: Graph, width: float, divisor: int) -> None:
    for name in graph.nodes:
        try:
            spec = get_block(graph.block(name))
        except NascoreError as err:
            raise graph.locate(err, name) from None
        params = graph.params(name)
        for p in spec.params:
            if not p.channels:
                continue
            value = params.get(p.name, p.default)
            if is_int(value):
                graph.set_param(name, p.name, make_divisible(value * width, divisor))
            elif isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
                graph.set_param(name, p.name, [make_divisible(v * width, divisor) for v in value])


def _scale_depth(graph: Graph, depth: float) -> None:
    added: dict[str, list[str]] = {}  # last original node of a stage -> nodes added behind it, in order
    for stage, nodes in graph.stages().items():
        target = ceil_repeats(len(nodes), depth)
        if target < len(nodes):
            for name in reversed(nodes[target:]):
                graph.remove(name)
            continue
        if len(graph) + target - len(nodes) > MAX_NODES:
            raise GraphError(f"depth {depth:g} would make more than {MAX_NODES} nodes", where=f"stage {stage!r}")
        last = nodes[-1]
        template = graph.params(last)
        if get_block(graph.block(last)).param("stride") is not None and (len(nodes) == 1 or "stride" in template):
            template["stride"] = 1
        for i in range(len(nodes), target):
            name = graph.insert_after(f"{stage}.{i - 1}", f"{stage}.{i}", graph.block(last), reorder=False,
                                      stage=stage, **template)
            added.setdefault(last, []).append(name)
    if added:  # one reorder at the end: new stage nodes follow their stage, not the end of the graph
        new = {n for names in added.values() for n in names}
        order = []
        for name in graph.nodes:
            if name not in new:
                order.append(name)
                order.extend(added.get(name, ()))
        graph.reorder(order)


__all__ = ["scale"]
