"""Necks and dense-prediction context modules: FPN, PAN, ASPP, PSP pyramid pooling.

Pyramid necks (``fpn``, ``pan``) take a list of feature maps ordered fine to coarse (C3, C4, C5) and return one map
per input, named ``p0..`` / ``n0..`` in the same order; a graph refers to them as ``fpn:p0``. ``aspp`` and ``psp``
take one map and return one.
"""

from __future__ import annotations

import dataclasses
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import LIST, BlockSpec, Param, hookimpl
from nascore.blocks.tally import Tally, fmt_shape
from nascore.errors import ShapeError
from nascore.blocks.layers import ConvNormAct, Norm, make_norm


def _out(default: int, doc: str = "output channels") -> Param:
    return dataclasses.replace(common.out(doc), default=default)


def _maps(in_shapes, what: str) -> None:
    for i, s in enumerate(in_shapes):
        if len(s) != 3:
            raise ShapeError(f"{what} needs (C, H, W) feature maps, got {fmt_shape(s)} (input {i})")


# -- FPN ------------------------------------------------------------------------------------------------------------


class FeaturePyramid(nn.Module):
    """Top-down pyramid: 1x1 lateral per level, nearest upsampling of the coarser merge, add, 3x3 smoothing.

    Mirrors ``torchvision.ops.FeaturePyramidNetwork`` without extra blocks (convolutions with bias, no norm); the
    state-dict keys are torchvision's (``inner_blocks.i.0``, ``layer_blocks.i.0``).
    """

    def __init__(self, in_channels: list[int], out: int):
        super().__init__()
        self.inner_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(c, out, 1)) for c in in_channels)
        self.layer_blocks = nn.ModuleList(nn.Sequential(nn.Conv2d(out, out, 3, padding=1)) for _ in in_channels)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        laterals: List[torch.Tensor] = []
        for i, inner in enumerate(self.inner_blocks):
            laterals.append(inner(xs[i]))
        n = len(laterals)
        merged: List[torch.Tensor] = [laterals[n - 1]]  # coarse to fine
        last = laterals[n - 1]
        for i in range(n - 2, -1, -1):
            lateral = laterals[i]
            last = lateral + F.interpolate(last, size=lateral.shape[-2:], mode="nearest")
            merged.append(last)
        outs: List[torch.Tensor] = []
        for i, layer in enumerate(self.layer_blocks):
            outs.append(layer(merged[n - 1 - i]))
        return outs


def _fpn_infer(in_shapes, out):
    _maps(in_shapes, "fpn")
    t = Tally()
    laterals = [t.conv(s, out, 1, bias=True) for s in in_shapes]
    merged = [laterals[-1]]
    for lateral in reversed(laterals[:-1]):
        t.upsample(merged[0], size=lateral[1:], mode="nearest")
        merged.insert(0, lateral)
    return t.result(**{f"p{i}": t.conv(m, out, 3, bias=True) for i, m in enumerate(merged)})


FPN = BlockSpec(
    name="fpn", aliases=("feature_pyramid",), module=FeaturePyramid, infer=_fpn_infer, arity=LIST,
    params=(_out(256, "channels of every pyramid level"),),
    doc="Feature Pyramid Network: lateral 1x1 convs, top-down nearest upsampling and add, 3x3 smoothing; inputs "
        "fine to coarse (C3, C4, C5), outputs p0.. in the same order (torchvision's, without extra levels).",
    paper="Feature Pyramid Networks for Object Detection (Lin et al. 2017)",
)

# -- PAN ------------------------------------------------------------------------------------------------------------


class _PanStage(nn.Module):
    def __init__(self, prev: int, channels: int, out: int, norm: Norm, act: str):
        super().__init__()
        self.down = ConvNormAct(prev, channels, 3, 2, norm=norm, act=act)
        self.fuse = ConvNormAct(channels, out, 3, norm=norm, act=act)

    def forward(self, p: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.fuse(p + self.down(prev))


class PathAggregation(nn.Module):
    """Bottom-up path aggregation over a pyramid ordered fine to coarse (PANet's augmentation, YOLO's neck).

    ``n0 = conv3x3(p0)``; ``n_i = conv3x3(p_i + conv3x3_stride2(n_{i-1}))``, every conv a conv-norm-act unit.
    The stride-2 conv maps ``out`` to the channels of ``p_i`` (so the add needs no other projection), the fusing conv
    maps them to ``out``. Each level must have the size of the previous one after a 3x3 stride-2 conv
    (``ceil(H / 2)``). PANet itself takes ``N2 = P2`` unprocessed; here every level gets its 3x3 conv.
    """

    def __init__(self, in_channels: list[int], out: int, norm: str, act: str, norm_eps: float, norm_momentum: float):
        super().__init__()
        norm = Norm(norm, norm_eps, norm_momentum)
        self.first = ConvNormAct(in_channels[0], out, 3, norm=norm, act=act)
        self.stages = nn.ModuleList(_PanStage(out, c, out, norm, act) for c in in_channels[1:])

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        n = self.first(xs[0])
        outs: List[torch.Tensor] = [n]
        for i, stage in enumerate(self.stages):
            n = stage(xs[i + 1], n)
            outs.append(n)
        return outs


def _pan_infer(in_shapes, out, norm, act, norm_eps, norm_momentum):
    _maps(in_shapes, "pan")
    t = Tally()
    norm = Norm(norm, norm_eps, norm_momentum)
    n = ConvNormAct.tally(t, in_shapes[0], out, 3, norm=norm, act=act)
    outs = {"n0": n}
    for i, p in enumerate(in_shapes[1:], start=1):
        down = ConvNormAct.tally(t, n, p[0], 3, 2, norm=norm, act=act)
        if down[1:] != p[1:]:
            raise ShapeError(f"pan: level {i - 1} downsampled by 2 is {fmt_shape(down)} but input {i} is "
                             f"{fmt_shape(p)}; inputs must be ordered fine to coarse, each half the previous size")
        outs[f"n{i}"] = n = ConvNormAct.tally(t, p, out, 3, norm=norm, act=act)
    return t.result(**outs)


PAN = BlockSpec(
    name="pan", aliases=("path_aggregation",), module=PathAggregation, infer=_pan_infer, arity=LIST,
    params=(_out(256, "channels of every output level"), common.norm(), common.act(), *common.norm_settings()),
    doc="PANet bottom-up path aggregation on top of an FPN: n0 = conv(p0), n_i = conv(p_i + stride-2 conv(n_{i-1})); "
        "inputs fine to coarse, outputs n0.. in the same order.",
    paper="Path Aggregation Network for Instance Segmentation (Liu et al. 2018); YOLOv4 (Bochkovskiy et al. 2020)",
)

# -- ASPP -----------------------------------------------------------------------------------------------------------


def _conv_bn_relu(in_channels: int, out: int, norm: Norm, kernel: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation if kernel == 3 else 0
    return [nn.Conv2d(in_channels, out, kernel, padding=padding, dilation=dilation, bias=False),
            make_norm(norm, out), nn.ReLU()]


class ASPPPooling(nn.Sequential):
    """Image-level branch: global average, 1x1 conv-BN-ReLU, bilinear upsampling back to the input size."""

    def __init__(self, in_channels: int, out: int, norm: Norm):
        super().__init__(nn.AdaptiveAvgPool2d(1), *_conv_bn_relu(in_channels, out, norm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous Spatial Pyramid Pooling as torchvision's ``segmentation.deeplabv3.ASPP`` (same layers and keys).

    A 1x1 branch, a 3x3 branch per atrous rate, an image-pooling branch, concatenated, then a 1x1 conv-BN-ReLU
    projection and dropout.
    """

    def __init__(self, in_channels: int, out: int, rates: tuple[int, ...], dropout: float, norm_eps: float,
                 norm_momentum: float):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        branches: list[nn.Module] = [nn.Sequential(*_conv_bn_relu(in_channels, out, norm))]
        branches += [nn.Sequential(*_conv_bn_relu(in_channels, out, norm, 3, r)) for r in rates]
        branches.append(ASPPPooling(in_channels, out, norm))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(*_conv_bn_relu(len(branches) * out, out, norm), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res: List[torch.Tensor] = []
        for conv in self.convs:
            res.append(conv(x))
        return self.project(torch.cat(res, 1))


def _aspp_infer(in_shapes, out, rates, dropout, norm_eps, norm_momentum):
    _maps(in_shapes, "aspp")
    t = Tally()
    shape = in_shapes[0]
    _, h, w = shape
    t.norm(t.conv(shape, out, 1), "batch")
    for r in rates:
        t.norm(t.conv(shape, out, 3, padding=r, dilation=r), "batch")
    pooled = t.norm(t.conv(t.adaptive_avg(shape, 1), out, 1), "batch")
    t.upsample(pooled, size=(h, w), mode="bilinear")
    cat = ((len(rates) + 2) * out, h, w)
    return t.result(out=t.norm(t.conv(cat, out, 1), "batch"))


ASPP_SPEC = BlockSpec(
    name="aspp", module=ASPP, infer=_aspp_infer,
    params=(_out(256), Param("rates", "ints", (12, 24, 36), "atrous rates of the 3x3 branches", low=1, high=256),
            Param("dropout", float, 0.5, "dropout after the projection (train only)", low=0.0, high=0.99),
            *common.norm_settings()),
    doc="DeepLabV3 ASPP: parallel 1x1, atrous 3x3 (one per rate) and image-pooling branches, concatenated and "
        "projected by a 1x1 conv-BN-ReLU.",
    paper="Rethinking Atrous Convolution for Semantic Image Segmentation (Chen et al. 2017, DeepLabV3)",
)

# -- PSP pyramid pooling --------------------------------------------------------------------------------------------


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling module: per bin size, adaptive average pooling, 1x1 conv-BN-ReLU, bilinear
    upsampling back to the input size; all concatenated with the input (``C + len(bins) * reduction`` channels).

    Layout of the authors' ``PPM`` (semseg): bias-free conv, ``align_corners=True``.
    """

    def __init__(self, in_channels: int, bins: tuple[int, ...], reduction: int | None, norm_eps: float,
                 norm_momentum: float):
        super().__init__()
        rd = _psp_reduction(in_channels, bins, reduction)
        norm = Norm("batch", norm_eps, norm_momentum)
        self.features = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(b), *_conv_bn_relu(in_channels, rd, norm)) for b in bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out: List[torch.Tensor] = [x]
        for f in self.features:
            out.append(F.interpolate(f(x), size=size, mode="bilinear", align_corners=True))
        return torch.cat(out, 1)


def _psp_reduction(channels: int, bins, reduction: int | None) -> int:
    if reduction is not None:
        return reduction
    if channels < len(bins):
        raise ShapeError(f"psp: {channels} input channels cannot be split over {len(bins)} bins; give 'reduction'")
    return channels // len(bins)


def _psp_infer(in_shapes, bins, reduction, norm_eps, norm_momentum):
    _maps(in_shapes, "psp")
    t = Tally()
    c, h, w = in_shapes[0]
    rd = _psp_reduction(c, bins, reduction)
    for b in bins:
        pooled = t.norm(t.conv(t.adaptive_avg(in_shapes[0], b), rd, 1), "batch")
        t.upsample(pooled, size=(h, w), mode="bilinear")
    return t.result(out=(c + len(bins) * rd, h, w))


PSP = BlockSpec(
    name="psp", aliases=("pyramid_pooling", "ppm"), module=PyramidPooling, infer=_psp_infer,
    params=(Param("bins", "ints", (1, 2, 3, 6), "output sizes of the adaptive poolings", low=1, high=64),
            Param("reduction", int, None, "channels of each pooled branch (default: input channels / bins)", low=1,
                  high=1 << 16, channels=True), *common.norm_settings()),
    doc="PSPNet pyramid pooling: pool to several bin sizes, 1x1 conv-BN-ReLU, upsample, concatenate with the input.",
    paper="Pyramid Scene Parsing Network (Zhao et al. 2017)",
)


@hookimpl
def nascore_blocks():
    return [FPN, PAN, ASPP_SPEC, PSP]
