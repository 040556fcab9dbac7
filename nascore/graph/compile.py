"""Compile a Graph into a torch.fx GraphModule: one generated line per node, no dispatch loop at run time.

Submodules are registered under the node names (``layer1.0`` nests as ``layer1`` -> ``0``), so state_dict keys are
readable and stable across builds of the same graph. Single-input blocks are called with a tensor, the others with
a list; multi-output blocks return a sequence that the generated code indexes. One graph output is returned as a
tensor, several as a tuple in the declared order.
"""

from __future__ import annotations

import operator
import re

import torch.fx as fx
import torch.nn as nn

from nascore.errors import NascoreError, PluginError, plugin_code
from nascore.graph.core import INPUT, Graph


def build(graph: Graph, drop_path_rate: float | None = None) -> fx.GraphModule:
    """Build ``graph``'s modules (input channels inferred) and generate the forward code.

    ``drop_path_rate`` (timm's rule) overrides each residual block's ``drop_path`` with a rate growing linearly
    with the block's position, from 0 to ``drop_path_rate`` at the last block that has one.
    """
    analysis = graph.analyse()
    rates = drop_path_schedule(analysis, drop_path_rate)
    modules: dict[str, nn.Module] = {}
    fx_graph = fx.Graph()
    values = {INPUT: fx_graph.placeholder("x")}
    for name in analysis.order:
        info = analysis.nodes[name]
        params = dict(info.params)
        if name in rates:
            params["drop_path"] = rates[name]
        modules[name] = _make_module(graph, name, info, params)
        args = [output_value(values, ref) for ref in info.inputs]
        call = fx_graph.call_module(name, (args[0],) if info.spec.arity.single else (args,))
        if len(info.outputs) == 1:
            values[name] = call
        else:
            values[name] = {out: fx_graph.call_function(operator.getitem, (call, i))
                            for i, out in enumerate(info.outputs)}
    results = [output_value(values, ref) for ref in graph.outputs]
    fx_graph.output(results[0] if len(results) == 1 else tuple(results))
    module = fx.GraphModule(modules, fx_graph, class_name=_class_name(graph.name))
    module.meta["nascore"] = {"name": graph.name, "input": list(graph.input_shape),
                              "outputs": [str(r) for r in graph.outputs]}
    return module


def _make_module(graph: Graph, name: str, info, params) -> nn.Module:
    """Call a block's factory; a plugin's exception or a non-module result becomes a located NascoreError."""
    try:
        with plugin_code(f"block {info.spec.name!r}'s module factory"):
            module = info.spec.module(info.spec.in_channels(info.in_shapes), **params)
    except NascoreError as err:
        raise graph.locate(err, name) from None
    if not isinstance(module, nn.Module):
        raise graph.locate(PluginError(f"block {info.spec.name!r}'s module factory returned "
                                         f"{type(module).__name__}, expected a torch.nn.Module"), name)
    return module


def output_value(values, ref):
    """The value a Ref names among the values computed so far (a multi-output node holds a dict)."""
    value = values[ref.node]
    if isinstance(value, dict):
        return value[ref.output] if ref.output else next(iter(value.values()))
    return value


def drop_path_schedule(analysis, rate: float | None) -> dict[str, float]:
    """timm's rule: per node with a ``drop_path`` parameter, a rate growing linearly from 0 to ``rate``."""
    if rate is None:
        return {}
    names = [n for n in analysis.order if analysis.nodes[n].spec.param("drop_path") is not None]
    if len(names) <= 1:
        return {n: float(rate) for n in names}
    return {n: float(rate) * i / (len(names) - 1) for i, n in enumerate(names)}


def _class_name(name: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", name)
    text = "".join(w[:1].upper() + w[1:] for w in words if w)
    return text if text[:1].isalpha() else f"Net{text}"


def set_drop_path(module: nn.Module, scale: float) -> None:
    """Scale every DropPath's rate to ``scale`` x its built rate (ScheduledDropPath grows ``scale`` 0 -> 1)."""
    from nascore.blocks.layers import DropPath

    for m in module.modules():
        if isinstance(m, DropPath):
            if not hasattr(m, "base_drop_prob"):
                m.base_drop_prob = m.drop_prob
            m.drop_prob = m.base_drop_prob * scale


__all__ = ["build", "drop_path_schedule", "output_value", "set_drop_path"]
