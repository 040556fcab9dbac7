"""Plugins for tests/blocks: blocks with a module and a schema only (no infer), and blocks whose infer is wrong."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from nascore import LIST, BlockSpec, Param, hookimpl
from nascore.blocks.layers import ConvNormAct
from nascore.blocks.tally import Tally, infer_with
from nascore_plugins.necks import FeaturePyramid

OUT = Param("out", int, doc="output channels", low=1, channels=True)


class PlainConv(nn.Module):
    """conv_bn_act's layers (3x3 conv, batch norm, ReLU), with no formula: what a plugin author writes."""

    def __init__(self, in_channels: int, out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.body = ConvNormAct(in_channels, out, kernel, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    @staticmethod
    def tally(t: Tally, shape, out: int, kernel: int = 3, stride: int = 1):
        return ConvNormAct.tally(t, shape, out, kernel, stride)


class Split(nn.Module):
    """Two outputs: the first half of the channels, and a 1x1 projection of the second half."""

    def __init__(self, in_channels: int, out: int):
        super().__init__()
        self.half = in_channels // 2
        self.proj = nn.Conv2d(in_channels - self.half, out, 1, bias=False)

    def forward(self, x: torch.Tensor):
        return x[:, : self.half], self.proj(x[:, self.half:])


class ReturnsDict(nn.Module):
    def forward(self, x):
        return {"a": x, "b": x}


class LyingParams(PlainConv):
    @staticmethod
    def tally(t: Tally, shape, out: int, kernel: int = 3, stride: int = 1):
        shape = PlainConv.tally(t, shape, out, kernel, stride)
        t.add_params(1)                                    # one parameter too many
        return shape


def _broken_infer(in_shapes, out, kernel, stride):
    return None + 1                                        # a plugin's bug: TypeError


CONV_PARAMS = (OUT, Param("kernel", int, 3, "kernel size", choices=(1, 3, 5)),
               Param("stride", int, 1, "stride", low=1, high=2))

PLAIN_CONV = BlockSpec(name="plain_conv", module=PlainConv, params=CONV_PARAMS, doc="conv-bn-relu, no formula",
                       examples=({"out": 8}, {"out": 12, "kernel": 5, "stride": 2}))
SPLIT = BlockSpec(name="split", module=Split, params=(OUT,), doc="two outputs, no formula", examples=({"out": 4},))
EXACT_CONV = BlockSpec(name="exact_conv", module=PlainConv, infer=infer_with(PlainConv), params=CONV_PARAMS,
                       doc="conv-bn-relu with its formula", examples=({"out": 8},))
LYING_CONV = BlockSpec(name="lying_conv", module=LyingParams, infer=infer_with(LyingParams), params=CONV_PARAMS,
                       doc="conv-bn-relu whose formula counts one parameter too many", examples=({"out": 8},))
BROKEN_INFER = BlockSpec(name="broken_infer", module=PlainConv, infer=_broken_infer, params=CONV_PARAMS,
                         doc="conv-bn-relu whose formula raises TypeError", examples=({"out": 8},))
DICT_OUT = BlockSpec(name="dict_out", module=lambda in_channels: ReturnsDict(), doc="returns a dict")
META_FPN = BlockSpec(name="meta_fpn", module=FeaturePyramid, arity=LIST, params=(dataclasses.replace(OUT, default=8),),
                     doc="the built-in FPN's module, without its formula")
NEEDS_EXAMPLE = BlockSpec(name="needs_example", module=PlainConv, params=CONV_PARAMS, doc="required out, no examples")


class MetaBlocks:
    """Well-behaved blocks without a formula, and one with an exact formula."""

    @hookimpl
    def nascore_blocks(self):
        return [PLAIN_CONV, SPLIT, EXACT_CONV, NEEDS_EXAMPLE,
                META_FPN]


class BadBlocks:
    """Blocks whose formula lies or crashes, or whose module returns a dict."""

    @hookimpl
    def nascore_blocks(self):
        return [LYING_CONV, BROKEN_INFER, DICT_OUT]
