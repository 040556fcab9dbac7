"""Check a block's weight-free formula against the module it builds; for built-in and third-party blocks alike.

``measure(module, in_shapes)`` runs the module on the meta device (no memory) under a dispatch-level counter that
applies the MAC rules of :mod:`nascore.blocks.tally` to the aten operations actually executed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nascore.blocks.spec import BlockSpec, Inference, Shape

aten = torch.ops.aten


def _conv(args, out):
    weight = args[1]
    return out.numel() * weight.shape[1] * math.prod(weight.shape[2:])


def _addmm(args, out):
    a, b = args[1], args[2]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _mm(args, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * b.shape[1]


def _bmm(args, out):
    a, b = args[0], args[1]
    return a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]


def _bn(args, out):
    if len(args) > 5 and args[5]:  # training-mode statistics: instance norm runs this way, fvcore counts it as 5
        return args[0].numel() * 5
    return args[0].numel() * (2 if args[1] is not None else 1)


def _norm5(args, out):
    return args[0].numel() * 5


_RULES = {
    aten.convolution: _conv,
    aten.addmm: _addmm,
    aten.mm: _mm,
    aten.bmm: _bmm,
    aten._native_batch_norm_legit_no_training: _bn,
    aten.native_batch_norm: _bn,
    aten.native_group_norm: _norm5,
    aten.native_layer_norm: _norm5,
    aten._adaptive_avg_pool2d: lambda args, out: args[0].numel(),
    aten.mean: lambda args, out: args[0].numel(),  # adaptive_avg_pool2d(x, 1) lowers to mean on CPU and meta
    aten.upsample_nearest2d: lambda args, out: out.numel(),
    aten.upsample_bilinear2d: lambda args, out: 4 * out.numel(),
}


class MacCounter(TorchDispatchMode):
    """Counts MACs of the aten operations that run inside it (fvcore's rules)."""

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        rule = _RULES.get(func._overloadpacket)
        if rule is not None:
            self.macs += int(rule(args, out[0] if isinstance(out, tuple) else out))
        return out


def measure(module: torch.nn.Module, in_shapes: Sequence[Shape], single: bool = True,
            device: str = "meta") -> Inference:
    """Run ``module`` (eval mode, batch 1) on ``device`` and return its real output shapes, params and MACs."""
    module = module.eval()
    xs = [torch.zeros((1, *s), device=device) for s in in_shapes]
    counter = MacCounter()
    with torch.no_grad(), counter:
        out = module(xs[0]) if single else module(xs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    params = sum(p.numel() for p in module.parameters())
    return Inference(outputs={str(i): tuple(o.shape[1:]) for i, o in enumerate(outs)}, params=params,
                     macs=counter.macs)


def check_block(spec: BlockSpec, in_shapes: Sequence[Shape], **params: Any) -> Inference:
    """Assert that ``spec.infer`` predicts exactly what the built module does; return the prediction.

    Use it in a plugin's own tests: ``check_block(my_spec, [(32, 16, 16)], out=64)``.
    """
    resolved = spec.resolve(params)
    predicted = spec.infer(list(in_shapes), **resolved)
    with torch.device("meta"):
        module = spec.module(spec.in_channels(in_shapes), **resolved)
    real = measure(module, in_shapes, single=spec.arity.single)
    assert list(real.outputs.values()) == list(predicted.outputs.values()), (
        f"{spec.name}: output shapes {list(real.outputs.values())} != predicted {list(predicted.outputs.values())}")
    assert real.params == predicted.params, f"{spec.name}: params {real.params} != predicted {predicted.params}"
    assert real.macs == predicted.macs, f"{spec.name}: MACs {real.macs} != predicted {predicted.macs}"
    return predicted
