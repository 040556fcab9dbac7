"""Basic blocks: conv-norm-act and its dilated / separable forms, pooling, heads, merges, resampling, SE.

Every block here is a small ``nn.Module`` plus a ``BlockSpec`` whose ``infer`` walks the same layers on a Tally.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import MANY, Arity, BlockSpec, Param, hookimpl
from nascore.blocks.tally import Tally, infer_with, same_shapes, same_spatial
from nascore.errors import ShapeError
from nascore.blocks.layers import (
    ConvNormAct,
    Norm,
    SqueezeExcite,
    act_params,
    channel_shuffle,
    make_act,
    make_divisible,
    make_norm,
)

# -- convolutions ---------------------------------------------------------------------------------------------------


def _conv(in_channels, out, kernel, stride, padding, dilation, groups, norm, act, bias, norm_eps, norm_momentum):
    return ConvNormAct(in_channels, out, kernel, stride, padding, dilation, groups,
                       Norm(norm, norm_eps, norm_momentum), act, bias)


def _conv_infer(in_shapes, out, kernel, stride, padding, dilation, groups, norm, act, bias, norm_eps, norm_momentum):
    t = Tally()
    return t.result(out=ConvNormAct.tally(t, in_shapes[0], out, kernel, stride, padding, dilation, groups,
                                          Norm(norm, norm_eps, norm_momentum), act, bias))


CONV = BlockSpec(
    name="conv_bn_act", aliases=("conv",), module=_conv, infer=_conv_infer,
    params=(common.out(), common.kernel(3), common.stride(),
            Param("padding", "pair", None, "padding (default: keeps the size at stride 1)", low=0, high=64),
            Param("dilation", int, 1, "dilation rate", low=1, high=64),
            Param("groups", int, 1, "convolution groups (channels must divide)", low=1, high=1 << 16),
            common.norm(), common.act(),
            Param("bias", bool, None, "convolution bias (default: only without a norm)"), *common.norm_settings()),
    doc="Convolution, normalisation, activation: the unit every block is made of.",
    paper="Batch Normalization (Ioffe & Szegedy 2015); NIN for 1x1 convolutions (Lin et al. 2014)",
)


def _dilated(in_channels, out, kernel, rate, stride, norm, act, norm_eps, norm_momentum):
    return ConvNormAct(in_channels, out, kernel, stride, None, rate, 1, Norm(norm, norm_eps, norm_momentum), act)


def _dilated_infer(in_shapes, out, kernel, rate, stride, norm, act, norm_eps, norm_momentum):
    t = Tally()
    return t.result(out=ConvNormAct.tally(t, in_shapes[0], out, kernel, stride, None, rate, 1,
                                          Norm(norm, norm_eps, norm_momentum), act))


DILATED = BlockSpec(
    name="dilated_conv", aliases=("atrous_conv",), module=_dilated, infer=_dilated_infer,
    params=(common.out(), common.kernel(3), Param("rate", int, 2, "dilation (atrous) rate", low=1, high=64),
            common.stride(), common.norm(), common.act(), *common.norm_settings()),
    doc="Dilated (atrous) convolution: a larger receptive field for the same parameters.",
    paper="Multi-Scale Context Aggregation by Dilated Convolutions (Yu & Koltun 2016)",
)


class DepthwiseSeparable(nn.Module):
    """Depthwise kxk per channel, optional SE, then pointwise 1x1 (MobileNetV1 / Xception)."""

    def __init__(self, in_channels, out, kernel, stride, norm, act, se_ratio, pw_act, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm(norm, norm_eps, norm_momentum)
        self.dw = ConvNormAct(in_channels, in_channels, kernel, stride, groups=in_channels, norm=norm, act=act)
        rd = max(1, int(in_channels * se_ratio))
        self.se = SqueezeExcite(in_channels, rd, act) if se_ratio > 0 else nn.Identity()
        self.pw = ConvNormAct(in_channels, out, 1, norm=norm, act=act if pw_act else "none")

    def forward(self, x):
        return self.pw(self.se(self.dw(x)))

    @staticmethod
    def tally(t, shape, out, kernel, stride, norm, act, se_ratio, pw_act, norm_eps, norm_momentum):
        norm = Norm(norm, norm_eps, norm_momentum)
        c = shape[0]
        shape = ConvNormAct.tally(t, shape, c, kernel, stride, groups=c, norm=norm, act=act)
        if se_ratio > 0:
            shape = SqueezeExcite.tally(t, shape, max(1, int(c * se_ratio)), act)
        return ConvNormAct.tally(t, shape, out, 1, norm=norm, act=act if pw_act else "none")




SEPARABLE = BlockSpec(
    name="depthwise_separable", aliases=("separable_conv",), module=DepthwiseSeparable,
    infer=infer_with(DepthwiseSeparable),
    params=(common.out(), common.kernel(3), common.stride(), common.norm(), common.act(),
            common.se_ratio(0.0, "squeeze-excitation ratio of the input channels (0 disables SE)"),
            Param("pw_act", bool, True, "activation after the pointwise conv (MobileNetV1: yes, EfficientNet: no)"),
            *common.norm_settings()),
    doc="Depthwise separable convolution: depthwise kxk then pointwise 1x1, ~1/N + 1/k^2 of a full conv.",
    paper="MobileNets (Howard et al. 2017); Xception (Chollet 2017)",
)


class NormAct(nn.Sequential):
    def __init__(self, in_channels, norm, act, norm_eps, norm_momentum):
        super().__init__()
        self.norm = make_norm(Norm(norm, norm_eps, norm_momentum), in_channels)
        self.act = make_act(act)


def _norm_act_infer(in_shapes, norm, act, norm_eps, norm_momentum):
    t = Tally()
    shape = t.norm(in_shapes[0], norm)
    t.add_params(act_params(act))
    return t.result(out=shape)


NORM_ACT = BlockSpec(
    name="norm_act", module=NormAct, infer=_norm_act_infer,
    params=(common.norm(), common.act(), *common.norm_settings()),
    doc="Normalisation then activation, without a convolution (DenseNet's final BN-ReLU, pre-activation nets).",
    paper="Identity Mappings in Deep Residual Networks (He et al. 2016)",
)

# -- pooling and heads ----------------------------------------------------------------------------------------------

_POOL_PARAMS = (common.kernel(3, "pooling window"), Param("stride", int, None, "stride (default: the kernel)", low=1, high=64),
                Param("padding", "pair", 0, "padding", low=0), Param("ceil_mode", bool, False, "round sizes up"))


def _max_pool(in_channels, kernel, stride, padding, ceil_mode):
    return nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)


def _avg_pool(in_channels, kernel, stride, padding, ceil_mode):
    return nn.AvgPool2d(kernel, stride, padding, ceil_mode=ceil_mode)


def _pool_infer(in_shapes, kernel, stride, padding, ceil_mode):
    t = Tally()
    return t.result(out=t.pool(in_shapes[0], kernel, stride, padding, ceil_mode))


MAX_POOL = BlockSpec(name="max_pool", module=_max_pool, infer=_pool_infer, params=_POOL_PARAMS,
                     doc="Max pooling.", paper="Gradient-Based Learning Applied to Document Recognition (LeCun 1998)")
AVG_POOL = BlockSpec(name="avg_pool", module=_avg_pool, infer=_pool_infer, params=_POOL_PARAMS,
                     doc="Average pooling.",
                     paper="Gradient-Based Learning Applied to Document Recognition (LeCun 1998)")


class GlobalAvgPool(nn.Module):
    """Average each channel over space: (C, H, W) -> (C,), or (C, 1, 1) with ``flatten: false``."""

    def __init__(self, in_channels, flatten):
        super().__init__()
        self.flatten = flatten

    def forward(self, x):
        x = F.adaptive_avg_pool2d(x, 1)
        return x.flatten(1) if self.flatten else x


def _gap_infer(in_shapes, flatten):
    t = Tally()
    shape = t.adaptive_avg(in_shapes[0], 1)
    return t.result(out=(shape[0],) if flatten else shape)


GAP = BlockSpec(
    name="global_avg_pool", aliases=("gap",), module=GlobalAvgPool, infer=_gap_infer,
    params=(Param("flatten", bool, True, "drop the 1x1 spatial dimensions"),),
    doc="Global average pooling instead of big fully-connected heads.",
    paper="Network In Network (Lin et al. 2014)",
)


def _flatten(in_channels):
    return nn.Flatten(1)


def _flatten_infer(in_shapes):
    n = 1
    for d in in_shapes[0]:
        n *= d
    return Tally().result(out=(n,))


FLATTEN = BlockSpec(name="flatten", module=_flatten, infer=_flatten_infer,
                    doc="Flatten a feature map to a vector.", paper="")


def _dropout(in_channels, p):
    return nn.Dropout(p)


def _identity_infer(in_shapes, **params):
    return Tally().result(out=in_shapes[0])


DROPOUT = BlockSpec(
    name="dropout", module=_dropout, infer=_identity_infer,
    params=(Param("p", float, 0.5, "drop probability (train only; kept units scaled by 1/(1-p))", low=0.0, high=0.99),),
    doc="Dropout: zero random units during training.",
    paper="Dropout: A Simple Way to Prevent Neural Networks from Overfitting (Srivastava et al. 2014)",
)


def _linear(in_channels, out, bias):
    return nn.Linear(in_channels, out, bias)


def _linear_infer(in_shapes, out, bias):
    t = Tally()
    return t.result(out=t.linear(in_shapes[0], out, bias))


LINEAR = BlockSpec(
    name="linear", aliases=("classifier", "fc"), module=_linear, infer=_linear_infer,
    params=(Param("out", int, 1000, "output features (classes)", low=1, high=1 << 20),
            Param("bias", bool, True, "add a bias")),
    doc="Fully-connected layer on a flat vector: the classifier head.", paper="",
)


def _identity(in_channels):
    return nn.Identity()


IDENTITY = BlockSpec(name="identity", aliases=("skip",), module=_identity, infer=_identity_infer,
                     doc="Pass the input through unchanged.", paper="")

# -- merges ---------------------------------------------------------------------------------------------------------


class Add(nn.Module):
    """Element-wise sum of inputs of one shape (residual joins)."""

    def __init__(self, in_channels):
        super().__init__()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out + x
        return out


class Multiply(nn.Module):
    """Element-wise product; shapes broadcast (a (C,1,1) gate times a (C,H,W) map)."""

    def __init__(self, in_channels):
        super().__init__()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out


class Concat(nn.Module):
    """Concatenate along channels (inputs share height and width)."""

    def __init__(self, in_channels):
        super().__init__()

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(xs, 1)


def _add_infer(in_shapes):
    return Tally().result(out=same_shapes(in_shapes, "add"))


def _broadcast(in_shapes):
    try:
        shape = tuple(torch.broadcast_shapes(*in_shapes))
    except RuntimeError:
        raise ShapeError("multiply needs shapes that broadcast, got "
                         + " and ".join("x".join(map(str, s)) for s in in_shapes)) from None
    return Tally().result(out=shape)


def _concat_infer(in_shapes):
    h, w = same_spatial(in_shapes, "concat")
    return Tally().result(out=(sum(s[0] for s in in_shapes), h, w))


ADD = BlockSpec(name="add", aliases=("sum",), module=Add, infer=_add_infer, arity=MANY,
                doc="Element-wise sum (residual and FPN joins).", paper="Deep Residual Learning (He et al. 2016)")
MULTIPLY = BlockSpec(name="multiply", aliases=("mul",), module=Multiply, infer=_broadcast, arity=MANY,
                     doc="Element-wise product with broadcasting (gating, attention).",
                     paper="Squeeze-and-Excitation Networks (Hu et al. 2018)")
CONCAT = BlockSpec(name="concat", aliases=("cat",), module=Concat, infer=_concat_infer, arity=MANY,
                   doc="Channel concatenation (Inception, DenseNet, U-Net joins).",
                   paper="Going Deeper with Convolutions (Szegedy et al. 2015)")

# -- channel and spatial rearrangement ------------------------------------------------------------------------------


def _check_shuffle(channels: int, groups: int) -> None:
    if channels % groups:
        raise ShapeError(f"channel_shuffle with groups={groups} needs channels divisible by it, got {channels}")


class ChannelShuffle(nn.Module):
    def __init__(self, in_channels, groups):
        super().__init__()
        _check_shuffle(in_channels, groups)
        self.groups = groups

    def forward(self, x):
        return channel_shuffle(x, self.groups)


def _shuffle_infer(in_shapes, groups):
    _check_shuffle(in_shapes[0][0], groups)
    return Tally().result(out=in_shapes[0])


SHUFFLE = BlockSpec(
    name="channel_shuffle", module=ChannelShuffle, infer=_shuffle_infer,
    params=(Param("groups", int, 2, "groups to interleave", low=1, high=1 << 16),),
    doc="Channel shuffle: let information cross convolution groups.",
    paper="ShuffleNet (Zhang et al. 2018)",
)


class Upsample(nn.Module):
    """Resize by ``scale``, or to the size of a second input (U-Net / FPN style joins)."""

    def __init__(self, in_channels, scale, mode):
        super().__init__()
        self.scale = float(scale)
        self.mode = mode
        self.align_corners = False if mode == "bilinear" else None

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        if len(xs) > 1:
            return F.interpolate(xs[0], size=xs[1].shape[-2:], mode=self.mode, align_corners=self.align_corners)
        return F.interpolate(xs[0], scale_factor=self.scale, mode=self.mode, align_corners=self.align_corners)


def _upsample_infer(in_shapes, scale, mode):
    t = Tally()
    if len(in_shapes) > 1:
        return t.result(out=t.upsample(in_shapes[0], size=in_shapes[1][1:], mode=mode))
    return t.result(out=t.upsample(in_shapes[0], scale=scale, mode=mode))


UPSAMPLE = BlockSpec(
    name="upsample", module=Upsample, infer=_upsample_infer, arity=Arity(1, 2),
    params=(Param("scale", float, 2.0, "scale factor (ignored when a second input gives the size)", low=0.01,
                  high=64.0),
            Param("mode", str, "nearest", "interpolation", choices=("nearest", "bilinear"))),
    doc="Upsample by a factor, or to a second input's size.",
    paper="Fully Convolutional Networks for Semantic Segmentation (Long et al. 2015)",
)

# -- attention ------------------------------------------------------------------------------------------------------


def _se_channels(channels, ratio, divisor):
    return make_divisible(channels * ratio, divisor, round_limit=0.0) if divisor > 1 else max(1, int(channels * ratio))


def _se(in_channels, ratio, divisor, act, gate):
    return SqueezeExcite(in_channels, _se_channels(in_channels, ratio, divisor), act, gate)


def _se_infer(in_shapes, ratio, divisor, act, gate):
    t = Tally()
    return t.result(out=SqueezeExcite.tally(t, in_shapes[0], _se_channels(in_shapes[0][0], ratio, divisor), act, gate))


SE = BlockSpec(
    name="se", aliases=("squeeze_excite",), module=_se, infer=_se_infer,
    params=(Param("ratio", float, 0.0625, "reduction: squeeze channels = ratio x channels", low=0.001, high=1.0),
            Param("divisor", int, 8, "round squeeze channels to a multiple of this (1: truncate)", low=1, high=256),
            common.act("relu"), common.act("sigmoid", "gate", "gating activation")),
    doc="Squeeze-and-Excitation: reweight channels by a gate computed from their global average.",
    paper="Squeeze-and-Excitation Networks (Hu et al. 2018)",
)


@hookimpl
def nascore_blocks():
    return [CONV, DILATED, SEPARABLE, NORM_ACT, MAX_POOL, AVG_POOL, GAP, FLATTEN, DROPOUT, LINEAR, IDENTITY, ADD,
            MULTIPLY, CONCAT, SHUFFLE, UPSAMPLE, SE]
