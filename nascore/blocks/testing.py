"""Check a block against the module it builds; for built-in and third-party blocks alike.

``check_block(spec, in_shapes, **params)`` is the one public check, for a plugin's own tests: a given ``infer`` must
predict exactly what the module does on the meta device (shapes, parameters, and MACs counted by
:class:`nascore.blocks.estimate.MacCounter`, a public ``FlopCounterMode``); a block without one must be measurable
there and run for real on the CPU. ``check_blocks()`` runs it on every registered block (``nascore blocks --check``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nascore.blocks.estimate import MacCounter, describe, inference_of, measure, plugin_of
from nascore.blocks.spec import BlockSpec, Inference, Shape
from nascore.blocks.tally import fmt_shape
from nascore.errors import NascoreError, ShapeError

DEFAULT_SHAPES: tuple[Shape, ...] = ((16, 32, 32), (16,))  # what `nascore blocks --check` feeds each input


def check_block(spec: BlockSpec, in_shapes: Sequence[Shape], **params: Any) -> Inference:
    """Assert that ``spec`` predicts exactly what its module does on ``in_shapes``; return the prediction.

    With an ``infer``: its output shapes, parameters and MACs must equal the meta-device module's. Without one: the
    meta-device estimate must work, and the module, built on the CPU, must run a batch of two and give the estimated
    shapes and parameter count. Use it in a plugin's tests: ``check_block(MY_SPEC, [(32, 16, 16)], out=64)``.
    A disagreement is an AssertionError naming the block and its plugin; a plugin's crash is a PluginError.
    """
    resolved = spec.resolve(params)
    shapes = [tuple(s) for s in in_shapes]
    predicted = inference_of(spec, shapes, resolved)
    if spec.infer is None:
        _check_runs(spec, shapes, resolved, predicted)
    else:
        _check_formula(spec, shapes, resolved, predicted)
    return predicted


def _check_formula(spec: BlockSpec, shapes: list[Shape], params: dict[str, Any], predicted: Inference) -> None:
    who = describe(spec)
    with torch.device("meta"):
        module = spec.module(spec.in_channels(shapes), **params)
    real = measure(module, shapes, single=spec.arity.single)
    assert list(real.outputs.values()) == list(predicted.outputs.values()), (
        f"{who}: output shapes {list(real.outputs.values())} != predicted {list(predicted.outputs.values())}")
    assert real.params == predicted.params, f"{who}: params {real.params} != predicted {predicted.params}"
    assert real.macs == predicted.macs, f"{who}: MACs {real.macs} != predicted {predicted.macs}"


def _check_runs(spec: BlockSpec, shapes: list[Shape], params: dict[str, Any], estimated: Inference) -> None:
    """The meta-device estimate worked; the module must also run for real, on a batch of two, and agree with it."""
    who = describe(spec)
    module = spec.module(spec.in_channels(shapes), **params).eval()
    seed = torch.Generator().manual_seed(0)
    xs = [torch.randn((2, *s), generator=seed) for s in shapes]
    with torch.no_grad():
        out = module(xs[0]) if spec.arity.single else module(xs)
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    real = [tuple(o.shape) for o in outs]
    expected = [(2, *shape) for shape in estimated.outputs.values()]
    assert real == expected, f"{who}: on the CPU a batch of 2 gave {real}, the meta-device estimate {expected}"
    n_params = sum(p.numel() for p in module.parameters())
    assert n_params == estimated.params, f"{who}: params on the CPU {n_params} != estimated {estimated.params}"


@dataclass(frozen=True)
class BlockCheck:
    """One block's result in :func:`check_blocks`: ``status`` is ``ok``, ``failed`` or ``skipped``."""

    block: str
    plugin: str
    status: str
    detail: str = ""


def check_blocks(specs: Iterable[BlockSpec] | None = None) -> list[BlockCheck]:
    """Run :func:`check_block` on every registered block (or ``specs``) with each of its examples.

    A block's examples are its ``examples`` or, when every parameter has a default, the defaults; each input gets the
    example's ``inputs`` or the first of :data:`DEFAULT_SHAPES` the block takes. A block with a required parameter
    and no examples, or that takes none of those shapes, is skipped and says why.
    """
    if specs is None:
        from nascore.blocks.registry import BLOCKS

        specs = [spec for _, spec in BLOCKS.items()]
    return [_check_one(spec) for spec in specs]


def _check_one(spec: BlockSpec) -> BlockCheck:
    plugin = plugin_of(spec)
    required = [p.name for p in spec.params if p.required]
    examples = [dict(e) for e in spec.examples] or ([{}] if not required else [])
    if not examples:
        what = f"parameter {required[0]} is" if len(required) == 1 else f"parameters {', '.join(required)} are"
        return BlockCheck(spec.name, plugin, "skipped", f"{what} required and the block gives no examples")
    for example in examples:
        given_inputs = example.pop("inputs", None)
        try:
            resolved = spec.resolve(example)
            in_shapes = ([tuple(s) for s in given_inputs] if given_inputs is not None
                         else _default_inputs(spec, resolved))
            if in_shapes is None:
                return BlockCheck(spec.name, plugin, "skipped", "takes none of the inputs "
                                  f"{', '.join(fmt_shape(s) for s in DEFAULT_SHAPES)}; give it examples with inputs")
            check_block(spec, in_shapes, **example)
        except (AssertionError, NascoreError) as exc:
            message = str(exc).removeprefix(f"{describe(spec)}: ")
            return BlockCheck(spec.name, plugin, "failed", f"{_example(example, given_inputs)}: {message}")
        except Exception as exc:  # noqa: BLE001 - a module that crashes is reported, the others still checked
            return BlockCheck(spec.name, plugin, "failed",
                              f"{_example(example, given_inputs)}: {type(exc).__name__}: {exc}")
    return BlockCheck(spec.name, plugin, "ok", f"{len(examples)} example{'s' if len(examples) > 1 else ''}")


def _default_inputs(spec: BlockSpec, resolved: dict[str, Any]) -> list[Shape] | None:
    for shape in DEFAULT_SHAPES:
        in_shapes = [shape] * spec.arity.min
        try:
            inference_of(spec, in_shapes, resolved)
        except ShapeError:
            continue
        return in_shapes
    return None


def _example(params: dict[str, Any], inputs: Any) -> str:
    text = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "defaults"
    return text if inputs is None else f"{text}, inputs {inputs}"


__all__ = ["DEFAULT_SHAPES", "BlockCheck", "MacCounter", "check_block", "check_blocks", "measure"]
