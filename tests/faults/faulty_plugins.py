"""Plugins that fail in every way a half-finished or hostile plugin can; tests register them by name.

Blocks here are valid BlockSpecs whose *behaviour* is broken (their infer or module factory raises or returns
garbage, or their infer lies about the module: ``LyingBlocks``; Ray workers load them through
``tests.faults.lying_plugin``), next to hooks that raise or return garbage. A strategy whose sampler raises lives
here too.
"""

from __future__ import annotations

import torch.nn as nn

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.tally import Tally
from nascore.nas.strategies import StrategySpec


def _identity_infer(in_shapes, **params):
    return Tally().result(out=in_shapes[0])


def _identity_module(in_channels, **params):
    return nn.Identity()


def _raiser(exc: BaseException):
    def fail(*args, **kwargs):
        raise exc
    return fail


def block(name: str, infer=_identity_infer, module=_identity_module, **extra) -> BlockSpec:
    return BlockSpec(name=name, module=module, infer=infer, doc=f"{name}: broken on purpose (tests/faults)",
                     paper="none", **extra)


INFER_RAISES = {
    "infer_zero_division": ZeroDivisionError("division by zero in a plugin's formula"),
    "infer_key_error": KeyError("missing_key"),
    "infer_runtime_error": RuntimeError("plugin formula broke"),
    "infer_attribute_error": AttributeError("'NoneType' object has no attribute 'shape'"),
    "infer_overflow": OverflowError("int too large to convert"),
    "infer_assertion": AssertionError("plugin assumption violated"),
    "infer_not_implemented": NotImplementedError("this plugin's infer is a stub"),
    "infer_recursion": RecursionError("maximum recursion depth exceeded"),
}
INFER_GARBAGE = {
    "infer_returns_none": lambda in_shapes: None,
    "infer_returns_dict": lambda in_shapes: {"out": in_shapes[0]},
    "infer_no_outputs": lambda in_shapes: Tally().result(),
    "infer_bad_shape": lambda in_shapes: Tally().result(out=("wide", -1)),
    "infer_negative_shape": lambda in_shapes: Tally().result(out=(-4, 8, 8)),
}
MODULE_RAISES = {
    "module_zero_division": ZeroDivisionError("division by zero in a plugin's __init__"),
    "module_key_error": KeyError("missing_key"),
    "module_runtime_error": RuntimeError("plugin constructor broke"),
    "module_type_error": TypeError("__init__() got an unexpected keyword argument 'width'"),
}


def _canonical_raises(params):
    raise ValueError("canonical hook broke")


class BrokenBehaviourBlocks:
    """Valid specs, broken behaviour: infer / module factory / canonical raise or return garbage."""

    @hookimpl
    def nascore_blocks(self):
        specs = [block(name, infer=_raiser(exc)) for name, exc in INFER_RAISES.items()]
        specs += [block(name, infer=fn) for name, fn in INFER_GARBAGE.items()]
        specs += [block(name, module=_raiser(exc)) for name, exc in MODULE_RAISES.items()]
        specs += [block("module_returns_none", module=lambda in_channels: None),
                  block("module_returns_int", module=lambda in_channels: 42),
                  block("canonical_raises", canonical=_canonical_raises),
                  block("works_fine")]
        return specs


class RaisesInHook:
    @hookimpl
    def nascore_blocks(self):
        raise RuntimeError("boom in the blocks hook")

    @hookimpl
    def nascore_strategies(self):
        raise KeyError("boom in the strategies hook")


class ReturnsGarbage:
    @hookimpl
    def nascore_blocks(self):
        return [None, "conv_bn_act", 42, {"name": "dict_block"}, block("garbage_neighbour")]


class ReturnsMapping:
    @hookimpl
    def nascore_blocks(self):
        return {"name": "a mapping, not a list"}


class ReturnsString:
    @hookimpl
    def nascore_blocks(self):
        return "conv_bn_act"


class GeneratorRaises:
    """A hook written as a generator that fails half-way: the failure happens while the registry iterates."""

    @hookimpl
    def nascore_blocks(self):
        yield block("yielded_before_failure")
        raise RuntimeError("generator hook broke half-way")


class GeneratorWorks:
    @hookimpl
    def nascore_blocks(self):
        yield block("from_a_generator")


class DuplicateOfBuiltin:
    @hookimpl
    def nascore_blocks(self):
        return [block("conv_bn_act")]


class DuplicateWithinOnePlugin:
    @hookimpl
    def nascore_blocks(self):
        return [block("twice_in_one_plugin"), block("twice_in_one_plugin")]


# -- strategies -----------------------------------------------------------------------------------------------------


def _exploding_sampler(where: str):
    import optuna

    class ExplodingSampler(optuna.samplers.RandomSampler):
        def sample_relative(self, study, trial, search_space):
            if where == "relative":
                raise RuntimeError("sampler exploded in sample_relative (on purpose)")
            return super().sample_relative(study, trial, search_space)

        def sample_independent(self, study, trial, param_name, param_distribution):
            if where == "independent":
                raise RuntimeError(f"sampler exploded sampling {param_name!r} (on purpose)")
            return super().sample_independent(study, trial, param_name, param_distribution)

    return ExplodingSampler(seed=0)


def _make_raises(ctx):
    raise RuntimeError("strategy factory broke (on purpose)")


class FaultyStrategies:
    @hookimpl
    def nascore_strategies(self):
        return [
            StrategySpec("faulty_make", _make_raises, "make() raises", multi_objective=True),
            StrategySpec("faulty_make_returns_none", lambda ctx: None, "make() returns None", multi_objective=True),
            StrategySpec("faulty_independent", lambda ctx: _exploding_sampler("independent"),
                         "sampler raises in sample_independent", multi_objective=True),
            StrategySpec("faulty_relative", lambda ctx: _exploding_sampler("relative"),
                         "sampler raises in sample_relative (inside study.ask)", multi_objective=True),
        ]


# -- blocks whose estimate lies (issue 14): infer disagrees with the module it builds --------------------------------


class _ThreeByThree(nn.Module):
    """What the lying blocks build: a 3x3 convolution with bias (stride 2 for the shape liar)."""

    def __init__(self, in_channels, out, stride=1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out, 3, stride, 1, bias=True)

    def forward(self, x):
        return self.conv(x)


class _Shrinks(nn.Module):
    """Adds its input to a 2x2 convolution of it: one pixel short, so the sum fails (the even-kernel mbconv bug)."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 2, 1, 0, bias=False)

    def forward(self, x):
        return x + self.conv(x)


def _as_1x1(in_shapes, out):
    """The lie: counted as a bias-free 1x1 convolution keeping the size."""
    c, h, w = in_shapes[0]
    t = Tally()
    t.params, t.macs = c * out, c * out * h * w
    return t.result(out=(out, h, w))


def _shrinks_infer(in_shapes):
    c, h, w = in_shapes[0]
    t = Tally()
    t.params = c * c * 4
    return t.result(out=(c, h, w))


def _shape_lie(in_shapes, out):
    """The parameters right (a 3x3 convolution with bias), the stride-2 halving left out."""
    t = Tally()
    return t.result(out=t.conv(in_shapes[0], out, 3, 1, 1, bias=True))


_OUT = (Param("out", int, 32, "output channels", low=1, high=1024),)
LIES_ABOUT_PARAMS = block("lies_about_params", infer=_as_1x1, params=_OUT,
                          module=lambda in_channels, out: _ThreeByThree(in_channels, out))
LIES_ABOUT_SHAPE = block("lies_about_shape", infer=_shape_lie, params=_OUT,
                         module=lambda in_channels, out: _ThreeByThree(in_channels, out, stride=2))
FAILS_TO_RUN = block("fails_to_run", infer=_shrinks_infer, module=_Shrinks)
LYING_BLOCKS = (LIES_ABOUT_PARAMS, LIES_ABOUT_SHAPE, FAILS_TO_RUN)


class LyingBlocks:
    """Blocks whose infer disagrees with their module: parameters, output shape, or a module that cannot run."""

    @hookimpl
    def nascore_blocks(self):
        return list(LYING_BLOCKS)
