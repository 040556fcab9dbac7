"""A block's shapes, parameters and MACs: from its ``infer`` formula (checked), or measured on the meta device.

A block that gives no ``infer`` is measured: its module is built under ``torch.device("meta")`` (no memory is
allocated), run once on a batch of one under :class:`torch.utils.flop_counter.FlopCounterMode`, and its
parameters counted. That costs milliseconds where a formula costs microseconds, so results are cached by (block,
input shapes, parameters); a search meets few distinct ones.

MACs follow :mod:`nascore.blocks.tally` (fvcore): FlopCounterMode's own formulas (convolutions, matrix products,
attention: all multiply-add based) count 2 FLOPs per multiply-add and are halved; norms, adaptive pooling, means and
upsampling are counted by ``MAC_RULES`` below; every other operation is free. Only public torch API is used, and
:class:`MacCounter` reproduces every built-in block's formula exactly (tests/plugins check each).
"""

from __future__ import annotations

import functools
import math
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from nascore.blocks.spec import BlockSpec, Inference, Shape, is_int
from nascore.blocks.tally import fmt_shape
from nascore.errors import EstimateMismatch, NascoreError, PluginError, ShapeError, plugin_code, raised

aten = torch.ops.aten

# -- MAC formulas for what FlopCounterMode does not count ------------------------------------------------------------
# FlopCounterMode hands a formula the shapes of the op's tensor arguments (None and scalars as they are) and the
# output's shape as ``out_shape``; each returns MACs (tally.py's rules).


def _bn_eval(x, weight, *args, out_shape=None) -> int:        # eval-mode batch norm: scale and shift
    return math.prod(x) * (2 if weight is not None else 1)


def _bn(x, weight, bias, running_mean, running_var, training, *args, out_shape=None) -> int:
    # batch statistics cost 5 per element (fvcore), as group / layer norm
    return math.prod(x) * 5 if training else _bn_eval(x, weight)


def _bn_legit(x, weight, bias, *rest, out_shape=None) -> int:   # (running_mean, running_var,) training, momentum, eps
    return _bn(x, weight, bias, None, None, rest[-3])


def _norm5(x, *args, out_shape=None) -> int:                  # group and layer norm compute their statistics
    return math.prod(x) * 5


def _per_input(x, *args, out_shape=None) -> int:
    return math.prod(x)


def _per_output(x, *args, out_shape=None) -> int:
    return math.prod(out_shape)


def _per_output_4(x, *args, out_shape=None) -> int:
    return 4 * math.prod(out_shape)


MAC_RULES = {
    aten._native_batch_norm_legit_no_training: _bn_eval,
    aten.native_batch_norm: _bn,
    aten._native_batch_norm_legit: _bn_legit,     # training-mode statistics: instance norm runs this way
    aten.native_group_norm: _norm5,
    aten.native_layer_norm: _norm5,
    aten._adaptive_avg_pool2d: _per_input,
    aten.mean: _per_input,          # adaptive_avg_pool2d(x, 1) lowers to mean; fvcore counts 1 per input element
    aten.upsample_nearest2d: _per_output,
    aten.upsample_bilinear2d: _per_output_4,
}


def _with_overloads(rules: Mapping[Any, Any]) -> dict[Any, Any]:
    # FlopCounterMode runs an op's Python decomposition (upsample_nearest2d has one) unless the op's *overload*
    # is a key of its registry, and counts under the op's packet. Keying every overload too keeps these ops whole.
    mapping = dict(rules)
    for packet, rule in rules.items():
        for name in packet.overloads():
            mapping[getattr(packet, name)] = rule
    return mapping


_MAPPING = _with_overloads(MAC_RULES)


class MacCounter(FlopCounterMode):
    """A FlopCounterMode that reports fvcore's MACs: ``with MacCounter() as c: model(x)``, then ``c.macs``."""

    def __init__(self) -> None:
        super().__init__(display=False, custom_mapping=_MAPPING)

    @property
    def macs(self) -> int:
        counts = self.get_flop_counts().get("Global", {})
        return sum(n if op in MAC_RULES else n // 2 for op, n in counts.items())


def run(module: nn.Module, in_shapes: Sequence[Shape], single: bool = True,
        device: str | torch.device = "meta") -> tuple[Any, int]:
    """Run ``module`` (eval mode, batch 1) on ``device`` under a MacCounter; return its raw output and MACs."""
    module = module.eval()
    xs = [torch.zeros((1, *s), device=device) for s in in_shapes]
    counter = MacCounter()
    with torch.no_grad(), counter:
        out = module(xs[0]) if single else module(xs)
    return out, counter.macs


def measure(module: nn.Module, in_shapes: Sequence[Shape], single: bool = True,
            device: str | torch.device = "meta") -> Inference:
    """Run ``module`` (eval mode, batch 1) on ``device``; its real output shapes (named by position), params, MACs."""
    out, macs = run(module, in_shapes, single, device)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    params = sum(p.numel() for p in module.parameters())
    return Inference(outputs={str(i): tuple(o.shape[1:]) for i, o in enumerate(outs)}, params=params, macs=macs)


# -- a block's inference -----------------------------------------------------------------------------------------


def plugin_of(spec: BlockSpec) -> str:
    """The name of the plugin that registered ``spec`` ('unregistered' for a spec used directly, as in tests)."""
    from nascore.blocks.registry import BLOCKS

    try:
        if BLOCKS.get(spec.name) is spec:
            return BLOCKS.owner(spec.name)
    except (NascoreError, KeyError):
        pass
    return "unregistered"


def describe(spec: BlockSpec) -> str:
    """``block 'ghost' of plugin 'ghost'``: how errors about a plugin's code name it."""
    return f"block {spec.name!r} of plugin {plugin_of(spec)!r}"


def inference_of(spec: BlockSpec, in_shapes: Sequence[Shape], params: Mapping[str, Any]) -> Inference:
    """What ``spec`` makes of ``in_shapes`` with resolved ``params``: its ``infer``, or :func:`estimate` without one.

    A NascoreError from the formula (a ShapeError: the user's shapes do not fit) passes through; any other exception,
    or a result that is not a valid Inference, is the plugin's bug: a PluginError naming the plugin and the block.
    """
    if spec.infer is None:
        return estimate(spec, in_shapes, params)
    with plugin_code(f"{describe(spec)}: its infer"):
        inference = spec.infer(list(in_shapes), **params)
    problem = _invalid(inference)
    if problem:
        raise PluginError(f"{describe(spec)}: its infer {problem}")
    return inference


def _invalid(inference: Any) -> str | None:
    if not isinstance(inference, Inference) or not isinstance(inference.outputs, dict) or not inference.outputs:
        return f"returned {reprlib.repr(inference)}, expected an Inference with at least one output"
    for out, shape in inference.outputs.items():
        if (not isinstance(shape, tuple) or not shape
                or not all(is_int(d) and d > 0 for d in shape)):
            return f"gave output {out!r} the shape {reprlib.repr(shape)}, expected a tuple of positive ints"
    if not all(is_int(v) and v >= 0 for v in (inference.params, inference.macs)):
        return (f"counted params={reprlib.repr(inference.params)}, macs={reprlib.repr(inference.macs)}; "
                "expected non-negative ints")
    return None


def estimate(spec: BlockSpec, in_shapes: Sequence[Shape], params: Mapping[str, Any]) -> Inference:
    """Build ``spec``'s module on the meta device and measure it (cached by block, input shapes and parameters).

    One output is named ``out``; a module returning a tuple or list of tensors (even of one, as a pyramid given one
    level) has outputs ``out0``, ``out1``, ... in that order (``node:out1`` in a graph). A module that cannot be built
    for, or cannot run on, these shapes is a ShapeError saying what it raised; one that runs but returns something
    else is a PluginError.
    ``estimate.cache_info()`` and ``estimate.cache_clear()`` work as for :func:`functools.lru_cache`.
    """
    key = _Key(spec.name, spec.module, tuple(tuple(s) for s in in_shapes), _freeze(params), spec)
    try:
        hash(key)
    except TypeError:        # a parameter value that cannot be frozen: measure without caching
        return _copy(_measure_block(key))
    return _copy(_cached(key))


@dataclass(frozen=True)
class _Key:
    name: str
    module: Any
    in_shapes: tuple[Shape, ...]
    params: tuple[tuple[str, Any], ...]
    spec: BlockSpec = field(compare=False, hash=False)


@functools.lru_cache(maxsize=8192)
def _cached(key: _Key) -> Inference:
    return _measure_block(key)


estimate.cache_info = _cached.cache_info    # type: ignore[attr-defined]
estimate.cache_clear = _cached.cache_clear  # type: ignore[attr-defined]


def _measure_block(key: _Key) -> Inference:
    spec, in_shapes, params = key.spec, list(key.in_shapes), dict(key.params)
    shapes = ", ".join(fmt_shape(s) for s in in_shapes)
    # Unlike a formula's failure (inference_of), a module failing on these inputs says they do not fit: the user's.
    with plugin_code(f"block {spec.name!r} cannot be built for inputs {shapes}: its module factory", ShapeError), \
            torch.device("meta"):
        module = spec.module(spec.in_channels(in_shapes), **params)
    if not isinstance(module, nn.Module):
        raise PluginError(f"{describe(spec)}: its module factory returned {type(module).__name__}, expected a "
                          "torch.nn.Module")
    with plugin_code(f"block {spec.name!r} cannot take inputs {shapes}: its module", ShapeError):
        out, macs = run(module, in_shapes, spec.arity.single)
    outputs = _name_outputs(spec, out)
    return Inference(outputs=outputs, params=sum(p.numel() for p in module.parameters()), macs=macs)


# -- a formula checked against its module -----------------------------------------------------------------------------


def check_estimate(spec: BlockSpec, in_shapes: Sequence[Shape], params: Mapping[str, Any]) -> None:
    """Raise EstimateMismatch when ``spec``'s ``infer`` disagrees with its module on ``in_shapes`` and ``params``.

    The module is built on the meta device (nothing allocated) and run on a batch of one: its parameter count and
    output shapes must equal the formula's exactly, and it must run on inputs the formula accepts. A block without
    ``infer`` is measured from its module in the first place: nothing to check. Cached by (block, input shapes,
    parameters) like :func:`estimate`, so a search worker pays once per distinct block use; ``cache_clear()`` works.
    The error names the block, its plugin and both figures; callers locate it at the node.
    """
    if spec.infer is None:
        return
    key = _Key(spec.name, spec.module, tuple(tuple(s) for s in in_shapes), _freeze(params), spec)
    try:
        hash(key)
    except TypeError:
        problem = _disagreement(key)
    else:
        problem = _checked(key)
    if problem:
        raise EstimateMismatch(f"{describe(spec)}: {problem}")


@functools.lru_cache(maxsize=8192)
def _checked(key: _Key) -> str | None:
    return _disagreement(key)


check_estimate.cache_clear = _checked.cache_clear  # type: ignore[attr-defined]
check_estimate.cache_info = _checked.cache_info    # type: ignore[attr-defined]


def _disagreement(key: _Key) -> str | None:
    """What differs between ``key``'s formula and its meta-device module, in words; None when nothing does."""
    spec, in_shapes, params = key.spec, list(key.in_shapes), dict(key.params)
    predicted = inference_of(spec, in_shapes, params)
    shapes = ", ".join(fmt_shape(s) for s in in_shapes)
    with plugin_code(f"{describe(spec)}: its module factory"), torch.device("meta"):
        module = spec.module(spec.in_channels(in_shapes), **params)
    if not isinstance(module, nn.Module):
        return f"its module factory returned {type(module).__name__}, expected a torch.nn.Module"
    built = sum(p.numel() for p in module.parameters())
    try:
        out, _ = run(module, in_shapes, spec.arity.single)
    except Exception as exc:  # noqa: BLE001 - the module fails where the formula said it fits: the disagreement
        estimated = ", ".join(fmt_shape(s) for s in predicted.outputs.values())
        return (f"its infer accepts inputs {shapes} (estimating {estimated}), its module does not: "
                f"{raised(None, exc)}")
    real = [tuple(int(d) for d in o.shape[1:]) for o in (out if isinstance(out, (tuple, list)) else [out])
            if isinstance(o, torch.Tensor)]
    problems = []
    if built != predicted.params:
        problems.append(f"its infer estimates {predicted.params:,} parameters, its module has {built:,}")
    estimated_shapes = list(predicted.outputs.values())
    if real != estimated_shapes:
        problems.append(f"its infer estimates output {' and '.join(fmt_shape(s) for s in estimated_shapes)}, its "
                        f"module gives {' and '.join(fmt_shape(s) for s in real) or _kind(out)}")
    if not problems:
        return None
    return f"{'; '.join(problems)} (inputs {shapes}); its estimate must agree with its module exactly"


def _name_outputs(spec: BlockSpec, out: Any) -> dict[str, Shape]:
    if isinstance(out, torch.Tensor):
        named = {"out": out}
    elif isinstance(out, (tuple, list)) and out and all(isinstance(o, torch.Tensor) for o in out):
        named = {f"out{i}": o for i, o in enumerate(out)}
    else:
        raise PluginError(f"{describe(spec)}: its module returned {_kind(out)}, expected a tensor or a tuple or "
                          "list of tensors")
    outputs = {}
    for name, tensor in named.items():
        shape = tuple(int(d) for d in tensor.shape[1:])
        if tensor.dim() < 2 or tensor.shape[0] != 1 or not all(d > 0 for d in shape):
            raise ShapeError(f"block {spec.name!r} made output {name!r} of shape {tuple(tensor.shape)} from a batch "
                             "of one; expected (1, C, ...) with no empty dimension")
        outputs[name] = shape
    return outputs


def _kind(value: Any) -> str:
    if isinstance(value, (tuple, list, dict)):
        inner = ", ".join(sorted({type(v).__name__ for v in (value.values() if isinstance(value, dict) else value)}))
        return f"a {type(value).__name__} of {inner or 'nothing'}"
    return f"a {type(value).__name__}"


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _copy(inference: Inference) -> Inference:
    return Inference(outputs=dict(inference.outputs), params=inference.params, macs=inference.macs)


__all__ = ["MAC_RULES", "MacCounter", "check_estimate", "describe", "estimate", "inference_of", "measure", "plugin_of",
           "run"]
