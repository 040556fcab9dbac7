"""Residual family: ResNet basic and bottleneck blocks (ResNeXt, SE-ResNet), Res2Net, DenseNet blocks.

Layouts mirror torchvision's ``resnet.py`` / ``densenet.py`` and timm's ``res2net.py`` / SE-ResNet so zoo graphs
match the reference parameter counts exactly. Each module's ``tally`` walks the same layers as its ``__init__``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from nascore_plugins import common

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.tally import Tally, infer_with
from nascore.errors import ShapeError
from nascore.blocks.layers import (
    ConvNormAct,
    DropPath,
    Norm,
    SqueezeExcite,
    act_params,
    make_act,
    make_divisible,
    make_norm,
)


def _se_channels(channels: int, ratio: float) -> int:
    """timm's SEModule: squeeze channels = make_divisible(channels * ratio, 8, round_limit=0)."""
    return make_divisible(channels * ratio, 8, round_limit=0.0)


def _se(channels: int, ratio: float, act: str) -> nn.Module:
    return SqueezeExcite(channels, _se_channels(channels, ratio), act) if ratio > 0 else nn.Identity()


def _se_tally(t: Tally, shape, ratio: float, act: str):
    return SqueezeExcite.tally(t, shape, _se_channels(shape[0], ratio), act) if ratio > 0 else shape


def _needs_projection(in_channels: int, out: int, stride: int) -> bool:
    return stride != 1 or in_channels != out


def _shortcut(in_channels: int, out: int, stride: int, norm: Norm) -> nn.Module:
    """torchvision's downsample: 1x1 conv (stride) + BN when the shape changes, else identity."""
    if _needs_projection(in_channels, out, stride):
        return ConvNormAct(in_channels, out, 1, stride, norm=norm, act="none")
    return nn.Identity()


def _shortcut_tally(t: Tally, shape, out: int, stride: int, norm: Norm):
    if _needs_projection(shape[0], out, stride):
        return ConvNormAct.tally(t, shape, out, 1, stride, norm=norm, act="none")
    return shape


def _joined(branch, short):
    if branch != short:  # a safeguard: padded 3x3 and 1x1 convolutions at one stride always agree
        raise ShapeError(f"residual branch gives {'x'.join(map(str, branch))} but the shortcut gives "
                         f"{'x'.join(map(str, short))}")
    return branch




# -- ResNet ---------------------------------------------------------------------------------------------------------


class BasicBlock(nn.Module):
    """3x3 (stride) - 3x3, optional SE on the branch, drop-path, add the (projected) input, activate.

    [Deep Residual Learning for Image Recognition, He et al. 2016]
    """

    def __init__(self, in_channels, out, stride, se_ratio, act, drop_path, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        self.conv1 = ConvNormAct(in_channels, out, 3, stride, norm=norm, act=act)
        self.conv2 = ConvNormAct(out, out, 3, norm=norm, act="none")
        self.se = _se(out, se_ratio, act)
        self.drop_path = DropPath(drop_path)
        self.shortcut = _shortcut(in_channels, out, stride, norm)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv2(self.conv1(x)))
        out = self.drop_path(out)
        out += self.shortcut(x)  # in place, like torchvision: no extra activation-sized tensor per block
        return self.act(out)

    @staticmethod
    def tally(t, shape, out, stride, se_ratio, act, drop_path, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        short = _shortcut_tally(t, shape, out, stride, norm)
        shape = ConvNormAct.tally(t, shape, out, 3, stride, norm=norm, act=act)
        shape = ConvNormAct.tally(t, shape, out, 3, norm=norm, act="none")
        shape = _se_tally(t, shape, se_ratio, act)
        t.add_params(act_params(act))
        return _joined(shape, short)


def _bottleneck_width(out: int, expansion: int, base_width: int, groups: int) -> int:
    planes = out // expansion
    if planes < 1:
        raise ShapeError(f"a bottleneck with expansion {expansion} needs at least {expansion} output channels, "
                         f"got {out}")
    width = int(planes * (base_width / 64.0)) * groups
    if width < 1:
        raise ShapeError(f"bottleneck width int({planes} x {base_width}/64) x {groups} is 0; raise base_width")
    return width


class Bottleneck(nn.Module):
    """1x1 reduce - 3x3 (stride, groups) - 1x1 expand, optional SE on the branch, drop-path, add, activate.

    torchvision's v1.5 layout (stride on the 3x3). ``groups`` > 1 with ``base_width`` gives ResNeXt.
    [Deep Residual Learning, He et al. 2016; Aggregated Residual Transformations (ResNeXt), Xie et al. 2017;
    Squeeze-and-Excitation Networks, Hu et al. 2018]
    """

    def __init__(self, in_channels, out, stride, groups, base_width, expansion, se_ratio, act, drop_path, norm_eps,
                 norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        width = _bottleneck_width(out, expansion, base_width, groups)
        self.conv1 = ConvNormAct(in_channels, width, 1, norm=norm, act=act)
        self.conv2 = ConvNormAct(width, width, 3, stride, groups=groups, norm=norm, act=act)
        self.conv3 = ConvNormAct(width, out, 1, norm=norm, act="none")
        self.se = _se(out, se_ratio, act)
        self.drop_path = DropPath(drop_path)
        self.shortcut = _shortcut(in_channels, out, stride, norm)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.conv3(self.conv2(self.conv1(x))))
        out = self.drop_path(out)
        out += self.shortcut(x)  # in place, like torchvision: no extra activation-sized tensor per block
        return self.act(out)

    @staticmethod
    def tally(t, shape, out, stride, groups, base_width, expansion, se_ratio, act, drop_path, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        width = _bottleneck_width(out, expansion, base_width, groups)
        short = _shortcut_tally(t, shape, out, stride, norm)
        shape = ConvNormAct.tally(t, shape, width, 1, norm=norm, act=act)
        shape = ConvNormAct.tally(t, shape, width, 3, stride, groups=groups, norm=norm, act=act)
        shape = ConvNormAct.tally(t, shape, out, 1, norm=norm, act="none")
        shape = _se_tally(t, shape, se_ratio, act)
        t.add_params(act_params(act))
        return _joined(shape, short)


_SE_DOC = "squeeze-excitation ratio of the output channels, on the branch before the add (0 disables SE)"

BASIC = BlockSpec(
    name="resnet_basic", aliases=("basic_block",), module=BasicBlock, infer=infer_with(BasicBlock),
    params=(common.out(), common.stride(), common.se_ratio(0.0, _SE_DOC), common.act(), common.drop_path(),
            *common.norm_settings()),
    doc="ResNet basic block: two 3x3 convolutions plus an identity or 1x1-projection shortcut (ResNet-18/34).",
    paper="Deep Residual Learning for Image Recognition (He et al. 2016)",
)

BOTTLENECK = BlockSpec(
    name="resnet_bottleneck", aliases=("bottleneck", "resnext"), module=Bottleneck, infer=infer_with(Bottleneck),
    params=(common.out("output channels (expansion x planes: 256/512/1024/2048 in ResNet-50)"), common.stride(),
            Param("groups", int, 1, "groups of the 3x3 convolution (ResNeXt cardinality)", low=1,
                  high=1 << 12),
            Param("base_width", int, 64, "width per group: 3x3 width = int(planes x base_width/64) x groups",
                  low=1, high=1 << 12),
            Param("expansion", int, 4, "output channels / planes", low=1, high=16),
            common.se_ratio(0.0, _SE_DOC), common.act(), common.drop_path(), *common.norm_settings()),
    doc="ResNet bottleneck block: 1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, shortcut (ResNet-50+).",
    paper="Deep Residual Learning for Image Recognition (He et al. 2016); Aggregated Residual Transformations for "
          "Deep Neural Networks (Xie et al. 2017); Squeeze-and-Excitation Networks (Hu et al. 2018)",
)

# -- Res2Net --------------------------------------------------------------------------------------------------------


class Res2NetBlock(nn.Module):
    """Res2Net bottleneck: the 3x3 stage splits its channels into ``scale`` parts and chains 3x3 convolutions.

    Split i (i < scale-1) is convolved after adding the previous split's output; the last split passes through.
    In a stage's first block (stride or projection) the splits are convolved independently and the last one is
    3x3 average-pooled (timm's Bottle2neck). [Res2Net: A New Multi-scale Backbone Architecture, Gao et al. 2019]
    """

    def __init__(self, in_channels, out, stride, scale, base_width, groups, se_ratio, act, drop_path, norm_eps,
                 norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        width = _bottleneck_width(out, 4, base_width, groups)
        self.width = width
        self.scale = scale
        self.is_first = _needs_projection(in_channels, out, stride)
        self.conv1 = ConvNormAct(in_channels, width * scale, 1, norm=norm, act=act)
        self.convs = nn.ModuleList([ConvNormAct(width, width, 3, stride, groups=groups, norm=norm, act=act)
                                    for _ in range(max(1, scale - 1))])
        self.pool = nn.AvgPool2d(3, stride, 1) if self.is_first else nn.Identity()
        self.conv3 = ConvNormAct(width * scale, out, 1, norm=norm, act="none")
        self.se = _se(out, se_ratio, act)
        self.drop_path = DropPath(drop_path)
        self.shortcut = _shortcut(in_channels, out, stride, norm)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(self.conv1(x), self.width, 1)
        outs: list[torch.Tensor] = []
        sp = splits[0]
        for i, conv in enumerate(self.convs):
            sp = splits[i] if i == 0 or self.is_first else sp + splits[i]
            sp = conv(sp)
            outs.append(sp)
        if self.scale > 1:
            outs.append(self.pool(splits[self.scale - 1]))
        out = self.se(self.conv3(torch.cat(outs, 1)))
        out = self.drop_path(out)
        out += self.shortcut(x)  # in place, like torchvision: no extra activation-sized tensor per block
        return self.act(out)

    @staticmethod
    def tally(t, shape, out, stride, scale, base_width, groups, se_ratio, act, drop_path, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        width = _bottleneck_width(out, 4, base_width, groups)
        short = _shortcut_tally(t, shape, out, stride, norm)
        split = ConvNormAct.tally(t, shape, width * scale, 1, norm=norm, act=act)
        split = (width,) + split[1:]
        for _ in range(max(1, scale - 1)):
            branch = ConvNormAct.tally(t, split, width, 3, stride, groups=groups, norm=norm, act=act)
        if scale > 1 and _needs_projection(shape[0], out, stride):
            t.pool(split, 3, stride, 1)
        shape = ConvNormAct.tally(t, (width * scale,) + branch[1:], out, 1, norm=norm, act="none")
        shape = _se_tally(t, shape, se_ratio, act)
        t.add_params(act_params(act))
        return _joined(shape, short)


RES2NET = BlockSpec(
    name="res2net", aliases=("bottle2neck",), module=Res2NetBlock, infer=infer_with(Res2NetBlock),
    params=(common.out("output channels (4 x planes)"), common.stride(),
            Param("scale", int, 4, "number of channel splits s in the hierarchical 3x3 stage", low=1, high=16),
            Param("base_width", int, 26, "width per split: int(planes x base_width/64) x groups", low=1,
                  high=1 << 12),
            Param("groups", int, 1, "groups of each split's 3x3 convolution (Res2NeXt cardinality)",
                  low=1, high=1 << 12),
            common.se_ratio(0.0, _SE_DOC), common.act(), common.drop_path(), *common.norm_settings()),
    doc="Res2Net bottleneck: hierarchical 3x3 convolutions across channel splits for multi-scale features.",
    paper="Res2Net: A New Multi-scale Backbone Architecture (Gao et al. 2019)",
)

# -- DenseNet -------------------------------------------------------------------------------------------------------


class DenseLayer(nn.Sequential):
    """BN-ReLU-1x1 (bn_size x growth) - BN-ReLU-3x3 (growth), convolutions without bias (torchvision)."""

    def __init__(self, in_channels, growth, bn_size, drop_rate, norm):
        super().__init__()
        self.norm1 = make_norm(norm, in_channels)
        self.act1 = make_act("relu")
        self.conv1 = nn.Conv2d(in_channels, bn_size * growth, 1, bias=False)
        self.norm2 = make_norm(norm, bn_size * growth)
        self.act2 = make_act("relu")
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    @staticmethod
    def tally(t, shape, growth, bn_size):
        shape = t.norm(shape)
        shape = t.conv(shape, bn_size * growth, 1)
        shape = t.norm(shape)
        return t.conv(shape, growth, 3)


class DenseBlock(nn.Module):
    """``layers`` dense layers, each reading the concatenation of the block input and all earlier layers' outputs.

    Output channels: in + layers x growth. [Densely Connected Convolutional Networks, Huang et al. 2017]
    """

    def __init__(self, in_channels, layers, growth, bn_size, drop_rate, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        self.layers = nn.ModuleList([DenseLayer(in_channels + i * growth, growth, bn_size, drop_rate, norm)
                                     for i in range(layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.layers:
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)

    @staticmethod
    def tally(t, shape, layers, growth, bn_size, drop_rate, norm_eps, norm_momentum):
        c = shape[0]
        for _ in range(layers):
            out = DenseLayer.tally(t, (c,) + shape[1:], growth, bn_size)
            c += growth
        return (c,) + out[1:] if layers else shape


class Transition(nn.Sequential):
    """BN-ReLU-1x1 convolution (no bias) to int(in x compression) channels, then 2x2 average pooling.

    [Densely Connected Convolutional Networks, Huang et al. 2017]
    """

    def __init__(self, in_channels, compression, norm_eps, norm_momentum):
        super().__init__()
        out = _compressed(in_channels, compression)
        self.norm = make_norm(Norm("batch", norm_eps, norm_momentum), in_channels)
        self.act = make_act("relu")
        self.conv = nn.Conv2d(in_channels, out, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)

    @staticmethod
    def tally(t, shape, compression, norm_eps, norm_momentum):
        shape = t.norm(shape)
        shape = t.conv(shape, _compressed(shape[0], compression), 1)
        return t.pool(shape, 2, 2)


def _compressed(channels: int, compression: float) -> int:
    out = int(channels * compression)
    if out < 1:
        raise ShapeError(f"transition compression {compression} leaves no channels of {channels}")
    return out


DENSE_BLOCK = BlockSpec(
    name="dense_block", aliases=("dense",), module=DenseBlock, infer=infer_with(DenseBlock),
    params=(Param("layers", int, 6, "dense layers in the block", low=0, high=256),
            Param("growth", int, 32, "growth rate k: channels each layer adds", low=1, high=4096, channels=True),
            Param("bn_size", int, 4, "bottleneck 1x1 width = bn_size x growth", low=1, high=16),
            Param("drop_rate", float, 0.0, "dropout after each layer (train only)", low=0.0, high=0.99),
            *common.norm_settings()),
    doc="DenseNet dense block: each BN-ReLU-1x1-BN-ReLU-3x3 layer reads all earlier features, concatenated.",
    paper="Densely Connected Convolutional Networks (Huang et al. 2017)",
)

DENSE_TRANSITION = BlockSpec(
    name="dense_transition", module=Transition, infer=infer_with(Transition),
    params=(Param("compression", float, 0.5, "output channels = int(in x compression)", low=0.01, high=1.0),
            *common.norm_settings()),
    doc="DenseNet transition: BN-ReLU-1x1 convolution compressing the channels, then 2x2 average pooling.",
    paper="Densely Connected Convolutional Networks (Huang et al. 2017)",
)


@hookimpl
def nascore_blocks():
    return [BASIC, BOTTLENECK, RES2NET, DENSE_BLOCK, DENSE_TRANSITION]
