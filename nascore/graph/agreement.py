"""The estimate must never disagree with the module: a graph's weight-free analysis checked against what it builds.

The analysis (:mod:`nascore.graph.analysis`) trusts each block's ``infer``; constraints (``--max-params``), ``graph
info`` and an export's manifest read it. Two checks hold it to the modules:

- :func:`check_estimates`: each node's block is built on the meta device and run once (nothing allocated; cached per
  block, input shapes and parameters, so a search worker pays once per distinct block use). A search worker runs it
  before training; a disagreement fails the trial, naming the node, the block, its plugin and both figures.
- :func:`run_once`: the built model runs a real batch node by node (``torch.fx.Interpreter``); a node that raises,
  or whose output shapes or parameter count differ from the analysis, is an EstimateMismatch naming it. An export
  runs it before writing anything.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from nascore.blocks.estimate import check_estimate, describe
from nascore.blocks.tally import fmt_shape
from nascore.errors import EstimateMismatch, NascoreError, raised


def check_estimates(graph: Any, analysis: Any = None) -> None:
    """Every node's estimate against its block's module on the meta device; EstimateMismatch located at the node."""
    analysis = analysis if analysis is not None else graph.analyse()
    for name in analysis.order:
        info = analysis.nodes[name]
        try:
            check_estimate(info.spec, info.in_shapes, info.params)
        except NascoreError as err:
            raise graph.locate(err, name) from None


def run_once(graph: Any, model: nn.Module, example: torch.Tensor, analysis: Any = None) -> None:
    """Run ``model`` (``graph.build()``'s GraphModule) on ``example`` without gradients, in eval mode, node by node.

    Each node's parameter count and output shapes (batch dimension aside) must equal the analysis; a node whose
    module raises is named with what it raised. Training mode is restored afterwards; nothing else changes (eval
    mode: no batch-norm statistics move).
    """
    analysis = analysis if analysis is not None else graph.analyse()
    for name in analysis.order:
        info = analysis.nodes[name]
        built = sum(p.numel() for p in model.get_submodule(name).parameters())
        if built != info.n_params:
            raise graph.locate(EstimateMismatch(
                f"{describe(info.spec)}: its infer estimates {info.n_params:,} parameters, its module has "
                f"{built:,}; its estimate must agree with its module exactly"), name)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _NodeByNode(model, graph, analysis).run(example)
    finally:
        model.train(training)


class _NodeByNode(fx.Interpreter):
    """Runs a GraphModule one node at a time, checking each block's output against the analysis."""

    def __init__(self, module: fx.GraphModule, graph: Any, analysis: Any):
        super().__init__(module)
        self.extra_traceback = False    # fx would append its own text to our one-line errors
        self.graph_doc = graph
        self.analysis = analysis

    def run_node(self, n: fx.Node) -> Any:
        info = self.analysis.nodes.get(n.target) if n.op == "call_module" else None
        if info is None:
            return super().run_node(n)
        inputs = ", ".join(fmt_shape(s) for s in info.in_shapes)
        try:
            result = super().run_node(n)
        except Exception as exc:  # noqa: BLE001 - the node's module fails where its estimate said it fits
            raise self.graph_doc.locate(EstimateMismatch(
                f"{describe(info.spec)}: its module fails on inputs {inputs} that its estimate accepts "
                f"(estimating {_shapes(info.outputs.values())}): {raised(None, exc)}"), n.target) from None
        outs = result if isinstance(result, (tuple, list)) else [result]
        real = [tuple(o.shape[1:]) if isinstance(o, torch.Tensor) else type(o).__name__ for o in outs]
        if real != list(info.outputs.values()):
            raise self.graph_doc.locate(EstimateMismatch(
                f"{describe(info.spec)}: its infer estimates output {_shapes(info.outputs.values())}, its module "
                f"gives {_shapes(real)} (inputs {inputs}); its estimate must agree with its module exactly"),
                n.target)
        return result


def _shapes(shapes: Any) -> str:
    return " and ".join(fmt_shape(s) if isinstance(s, tuple) else str(s) for s in shapes)


__all__ = ["check_estimates", "run_once"]
