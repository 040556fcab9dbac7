"""Necks and dense-prediction context modules: FPN, PAN, FPN+PAN, BiFPN, ASFF, ASPP, PSP pyramid pooling.

Pyramid necks (``fpn``, ``pan``, ``fpn_pan``, ``bifpn``, ``asff``) take a list of feature maps ordered fine to coarse
(C3, C4, C5) and return one map per level, named ``p0..`` (``pan``: ``n0..``) in the same order; a graph refers to
them as ``fpn:p0``. Because ``fpn``, ``fpn_pan``, ``bifpn`` and ``asff`` name their outputs alike, one search-space
node can choose among them (search_spaces/necks.yaml). ``aspp`` and ``psp`` take one map and return one.
"""

from __future__ import annotations

import dataclasses
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import LIST, MANY, BlockSpec, Inference, Param, hookimpl
from nascore.blocks.tally import Tally, fmt_shape
from nascore.errors import ShapeError
from nascore.blocks.layers import ConvNormAct, Norm, act_params, make_act, make_norm


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

# -- FPN + PAN ------------------------------------------------------------------------------------------------------


class FeaturePyramidPathAggregation(nn.Module):
    """PANet's neck in one block: the FPN's top-down path, then the bottom-up path aggregation on its levels."""

    def __init__(self, in_channels: list[int], out: int, norm: str, act: str, norm_eps: float, norm_momentum: float):
        super().__init__()
        self.fpn = FeaturePyramid(in_channels, out)
        self.pan = PathAggregation([out] * len(in_channels), out, norm, act, norm_eps, norm_momentum)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        return self.pan(self.fpn(xs))


def _fpn_pan_infer(in_shapes, out, norm, act, norm_eps, norm_momentum):
    fpn = _fpn_infer(in_shapes, out)
    pan = _pan_infer(list(fpn.outputs.values()), out, norm, act, norm_eps, norm_momentum)
    return Inference(outputs={f"p{i}": s for i, s in enumerate(pan.outputs.values())},
                     params=fpn.params + pan.params, macs=fpn.macs + pan.macs)


FPN_PAN = BlockSpec(
    name="fpn_pan", aliases=("panet",), module=FeaturePyramidPathAggregation, infer=_fpn_pan_infer, arity=LIST,
    params=PAN.params,
    doc="PANet neck: an FPN (top-down) followed by PAN's bottom-up path aggregation; inputs fine to coarse, "
        "outputs p0.. in the same order (the fpn and pan blocks in one node, so a space can choose it beside fpn, "
        "bifpn and asff).",
    paper="Path Aggregation Network for Instance Segmentation (Liu et al. 2018)",
    examples=({"out": 16, "inputs": [[16, 32, 32], [24, 16, 16], [32, 8, 8]]},),
)

# -- shared by BiFPN and ASFF ---------------------------------------------------------------------------------------


def _halving(in_shapes, what: str) -> None:
    """Every level is the previous one after a 3x3 stride-2 max pool or conv with padding 1 (``ceil(H / 2)``)."""
    _maps(in_shapes, what)
    for i in range(1, len(in_shapes)):
        prev, shape = in_shapes[i - 1], in_shapes[i]
        half = Tally().pool(prev, 3, 2, 1)
        if half[1:] != shape[1:]:
            raise ShapeError(f"{what}: input {i} is {fmt_shape(shape)} but input {i - 1} ({fmt_shape(prev)}) halved "
                             f"is {half[1]}x{half[2]}; inputs must be ordered fine to coarse, each half the previous "
                             "size (ceil(H / 2))")


def _lateral(in_channels: int, out: int, norm: Norm, act: str = "none") -> nn.Module:
    """A 1x1 conv + norm (+ act) to ``out`` channels where the channels differ, else nothing."""
    return ConvNormAct(in_channels, out, 1, norm=norm, act=act) if in_channels != out else nn.Identity()


def _lateral_tally(t: Tally, shape, out: int, norm: Norm, act: str = "none"):
    return ConvNormAct.tally(t, shape, out, 1, norm=norm, act=act) if shape[0] != out else shape


# -- BiFPN ----------------------------------------------------------------------------------------------------------

FUSIONS = ("fast", "softmax")
_KEEP, _UP, _DOWN = "keep", "up", "down"   # how a fusion input reaches its node: as it is, nearest upsampling, max pool


def fuse_weights(weight: torch.Tensor, fusion: str, eps: float) -> torch.Tensor:
    """BiFPN's normalised fusion weights: ``fast`` relu(w_i) / (eps + sum_j relu(w_j)), or ``softmax`` over w."""
    if fusion == "softmax":
        return torch.softmax(weight, 0)
    w = F.relu(weight)
    return w / (w.sum() + eps)


class SeparableConvNorm(nn.Module):
    """EfficientDet's separable conv: depthwise 3x3 (no bias), pointwise 1x1, norm; no norm between, no activation."""

    def __init__(self, channels: int, norm: Norm):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.conv_pw = nn.Conv2d(channels, channels, 1, bias=norm.kind == "none")
        self.norm = make_norm(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv_pw(self.conv_dw(x)))

    @staticmethod
    def tally(t: Tally, shape, norm: Norm):
        shape = t.conv(shape, shape[0], 3, groups=shape[0])
        return t.norm(t.conv(shape, shape[0], 1, bias=norm.kind == "none"), norm.kind)


class FusionNode(nn.Module):
    """One BiFPN node: each input through its lateral (where its channels differ from the width) and resampled to
    this level, fused with normalised learnable weights, then activation and a separable conv + norm."""

    def __init__(self, in_channels: list[int], resample: list[str], width: int, fusion: str, fusion_eps: float,
                 act: str, norm: Norm):
        super().__init__()
        self.laterals = nn.ModuleList(_lateral(c, width, norm) for c in in_channels)
        self.resample = resample
        self.fusion = fusion
        self.fusion_eps = fusion_eps
        self.weight = nn.Parameter(torch.ones(len(in_channels)))
        self.act = make_act(act)
        self.conv = SeparableConvNorm(width, norm)

    def forward(self, xs: List[torch.Tensor], size: List[int]) -> torch.Tensor:
        w = fuse_weights(self.weight, self.fusion, self.fusion_eps)
        fused = xs[0]
        for k, lateral in enumerate(self.laterals):
            y = lateral(xs[k])
            if self.resample[k] == "up":         # _UP, _DOWN: TorchScript reads no module-level constants
                y = F.interpolate(y, size=size, mode="nearest")
            elif self.resample[k] == "down":
                y = F.max_pool2d(y, 3, 2, 1)
            fused = y * w[k] if k == 0 else fused + y * w[k]
        return self.conv(self.act(fused))

    @staticmethod
    def tally(t: Tally, shapes, resample: list[str], size, width: int, act: str, norm: Norm):
        for shape, how in zip(shapes, resample):
            y = _lateral_tally(t, shape, width, norm)
            if how == _UP:
                t.upsample(y, size=size)
        t.add_params(len(shapes) + act_params(act))
        return SeparableConvNorm.tally(t, (width, *size), norm)


def _bifpn_nodes(channels: list[int], width: int) -> tuple[list[tuple[list[int], list[str]]], ...]:
    """(input channels, resampling) of the top-down nodes (levels n-2 .. 0) and bottom-up nodes (levels 1 .. n-1)."""
    n = len(channels)
    top_down = [([channels[i], channels[i + 1] if i == n - 2 else width], [_KEEP, _UP]) for i in range(n - 2, -1, -1)]
    bottom_up = [([channels[i], width, width], [_KEEP, _KEEP, _DOWN]) if i < n - 1
                 else ([channels[i], width], [_KEEP, _DOWN]) for i in range(1, n)]
    return top_down, bottom_up


class BiFPNLayer(nn.Module):
    """One top-down + bottom-up pass over ``n`` levels (EfficientDet's figure 2d).

    Top-down, level ``i = n-2 .. 0``: ``td_i = node(x_i, up(td_{i+1}))`` with ``td_{n-1} = x_{n-1}``; ``td_0`` is
    output 0. Bottom-up, ``i = 1 .. n-1``: ``out_i = node(x_i, td_i, down(out_{i-1}))`` (the top level has no
    ``td``: ``node(x_{n-1}, down(out_{n-2}))``). Every edge from an input whose channels differ from the width has
    its own 1x1 conv + norm (the official implementation's per-edge resampling), so in the first pass a middle level
    is projected twice.
    """

    def __init__(self, in_channels: list[int], width: int, fusion: str, fusion_eps: float, act: str, norm: Norm):
        super().__init__()
        top_down, bottom_up = _bifpn_nodes(in_channels, width)
        self.top_down = nn.ModuleList(FusionNode(chans, how, width, fusion, fusion_eps, act, norm)
                                      for chans, how in top_down)
        self.bottom_up = nn.ModuleList(FusionNode(chans, how, width, fusion, fusion_eps, act, norm)
                                       for chans, how in bottom_up)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        n = len(xs)
        td: List[torch.Tensor] = [xs[n - 1]]          # coarse to fine: level i is td[n - 1 - i]
        for j, node in enumerate(self.top_down):
            x = xs[n - 2 - j]
            td.append(node([x, td[j]], x.shape[-2:]))
        outs: List[torch.Tensor] = [td[n - 1]]
        for j, node in enumerate(self.bottom_up):
            i = j + 1
            x = xs[i]
            if i < n - 1:
                outs.append(node([x, td[n - 1 - i], outs[j]], x.shape[-2:]))
            else:
                outs.append(node([x, outs[j]], x.shape[-2:]))
        return outs

    @staticmethod
    def tally(t: Tally, shapes, width: int, act: str, norm: Norm):
        n = len(shapes)
        top_down, bottom_up = _bifpn_nodes([s[0] for s in shapes], width)
        for (chans, how), i in zip(top_down, range(n - 2, -1, -1)):
            ins = [(c, *shapes[j][1:]) for c, j in zip(chans, (i, i + 1))]        # x_i, td_{i+1} (coarser)
            FusionNode.tally(t, ins, how, shapes[i][1:], width, act, norm)
        for (chans, how), i in zip(bottom_up, range(1, n)):
            ins = [(c, *shapes[i][1:]) for c in chans]      # x_i, td_i, out_{i-1}: pooling is free, sizes checked
            FusionNode.tally(t, ins, how, shapes[i][1:], width, act, norm)
        return [(width, *s[1:]) for s in shapes]


class BiFPN(nn.Module):
    """EfficientDet's weighted bi-directional feature pyramid: ``extra_levels`` coarser levels made from the last
    input (1x1 conv + norm to the width where its channels differ, then 3x3 stride-2 max pool, as P6 and P7 from
    C5), then ``repeats`` :class:`BiFPNLayer` passes. Returns one map of ``out`` channels per level, fine to coarse.

    Layout and parameter count of ``effdet`` (Ross Wightman's port of the official implementation) with
    ``redundant_bias=False``: for EfficientDet-D0 (C3-C5 of EfficientNet-B0, width 64, 3 repeats, 2 extra levels)
    194,361 parameters, as tests/plugins/test_necks.py derives.
    """

    def __init__(self, in_channels: list[int], out: int, repeats: int, extra_levels: int, fusion: str,
                 fusion_eps: float, act: str, norm: str, norm_eps: float, norm_momentum: float):
        super().__init__()
        norm_ = Norm(norm, norm_eps, norm_momentum)
        self.extra = nn.ModuleList()
        levels = list(in_channels)
        for _ in range(extra_levels):
            self.extra.append(nn.Sequential(_lateral(levels[-1], out, norm_), nn.MaxPool2d(3, 2, 1)))
            levels.append(out)
        self.layers = nn.ModuleList()
        for _ in range(repeats):
            self.layers.append(BiFPNLayer(levels, out, fusion, fusion_eps, act, norm_))
            levels = [out] * len(levels)

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        feats: List[torch.Tensor] = list(xs)
        for extra in self.extra:
            feats.append(extra(feats[-1]))
        for layer in self.layers:
            feats = layer(feats)
        return feats


def _bifpn_infer(in_shapes, out, repeats, extra_levels, fusion, fusion_eps, act, norm, norm_eps, norm_momentum):
    _halving(in_shapes, "bifpn")
    if len(in_shapes) + extra_levels < 2:
        raise ShapeError(f"bifpn: {len(in_shapes)} input and extra_levels={extra_levels} make one level; a BiFPN "
                         "fuses at least 2: give more inputs or raise the parameter 'extra_levels'")
    t = Tally()
    norm_ = Norm(norm, norm_eps, norm_momentum)
    shapes = list(in_shapes)
    for _ in range(extra_levels):
        shapes.append(t.pool(_lateral_tally(t, shapes[-1], out, norm_), 3, 2, 1))
    for _ in range(repeats):
        shapes = BiFPNLayer.tally(t, shapes, out, act, norm_)
    return t.result(**{f"p{i}": s for i, s in enumerate(shapes)})


BIFPN = BlockSpec(
    name="bifpn", module=BiFPN, infer=_bifpn_infer, arity=LIST,
    params=(_out(64, "width: channels of every level and fusion node (EfficientDet-D0: 64)"),
            Param("repeats", int, 3, "top-down + bottom-up passes (EfficientDet-D0: 3)", low=1, high=16),
            Param("extra_levels", int, 0, "coarser levels made from the last input by 1x1 conv + norm (where its "
                  "channels differ) and 3x3 stride-2 max pool (EfficientDet: 2, P6 and P7 from C5)", low=0, high=6),
            Param("fusion", str, "fast", "fusion weights: fast normalised relu(w_i) / (eps + sum relu(w_j)), or "
                  "softmax over w", choices=FUSIONS),
            Param("fusion_eps", float, 1e-4, "epsilon of the fast normalised fusion", low=0.0, high=1.0),
            common.act("silu", doc="activation before each fusion node's separable conv (EfficientDet: swish)"),
            common.norm(), *common.norm_settings()),
    doc="BiFPN (EfficientDet): repeated top-down + bottom-up passes whose nodes fuse their inputs with fast "
        "normalised learnable weights, then a depthwise-separable conv + norm; inputs fine to coarse (plus "
        "extra_levels made by pooling), outputs p0.. in the same order.",
    paper="EfficientDet: Scalable and Efficient Object Detection (Tan, Pang and Le 2020)",
    examples=({"out": 16, "repeats": 2, "extra_levels": 2},
              {"out": 8, "fusion": "softmax", "inputs": [[16, 32, 32], [24, 16, 16], [32, 8, 8]]}),
)

# -- ASFF -----------------------------------------------------------------------------------------------------------


class AsffLevel(nn.Module):
    """ASFF at one level ``l``: every level resized to ``l`` at the width (coarser: 1x1 conv-norm-act where the
    channels differ, then nearest upsampling; finer by 2^d: d-1 3x3 stride-2 max pools then a 3x3 stride-2
    conv-norm-act; level ``l`` itself: 1x1 conv-norm-act where the channels differ), per-pixel weights
    ``softmax_k(conv1x1(cat_k(conv1x1_k(x^{k->l}))))``, fused ``sum_k alpha_k x^{k->l}``, a 3x3 conv-norm-act."""

    def __init__(self, in_channels: list[int], level: int, width: int, compress: int, act: str, norm: Norm):
        super().__init__()
        self.level = level
        self.resize = nn.ModuleList(_asff_resize(c, k, level, width, act, norm) for k, c in enumerate(in_channels))
        self.weight_convs = nn.ModuleList(ConvNormAct(width, compress, 1, norm=norm, act=act) for _ in in_channels)
        self.weight_levels = nn.Conv2d(compress * len(in_channels), len(in_channels), 1)
        self.expand = ConvNormAct(width, width, 3, norm=norm, act=act)

    def resized(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        size = xs[self.level].shape[-2:]
        out: List[torch.Tensor] = []
        for k, resize in enumerate(self.resize):
            y = resize(xs[k])
            if k > self.level:
                y = F.interpolate(y, size=size, mode="nearest")
            out.append(y)
        return out

    def weights(self, resized: List[torch.Tensor]) -> torch.Tensor:
        """The per-pixel fusion weights (N, levels, H, W), summing to one over the levels."""
        logits: List[torch.Tensor] = []
        for k, conv in enumerate(self.weight_convs):
            logits.append(conv(resized[k]))
        return torch.softmax(self.weight_levels(torch.cat(logits, 1)), dim=1)

    def forward(self, xs: List[torch.Tensor]) -> torch.Tensor:
        resized = self.resized(xs)
        alpha = self.weights(resized)
        fused = resized[0] * alpha[:, 0:1]
        for k in range(1, len(resized)):
            fused = fused + resized[k] * alpha[:, k:k + 1]
        return self.expand(fused)

    @staticmethod
    def tally(t: Tally, shapes, level: int, width: int, compress: int, act: str, norm: Norm):
        size = shapes[level][1:]
        for k, shape in enumerate(shapes):
            if k < level:
                for _ in range(level - k - 1):
                    shape = t.pool(shape, 3, 2, 1)
                shape = ConvNormAct.tally(t, shape, width, 3, 2, norm=norm, act=act)
            else:
                shape = _lateral_tally(t, shape, width, norm, act)
                if k > level:
                    shape = t.upsample(shape, size=size)
            if shape[1:] != size:
                raise ShapeError(f"asff: input {k} ({fmt_shape(shapes[k])}) resized to level {level} is "
                                 f"{fmt_shape(shape)}, expected {width}x{size[0]}x{size[1]}")
            ConvNormAct.tally(t, shape, compress, 1, norm=norm, act=act)
        t.conv((compress * len(shapes), *size), len(shapes), 1, bias=True)
        return ConvNormAct.tally(t, (width, *size), width, 3, norm=norm, act=act)


def _asff_resize(in_channels: int, k: int, level: int, width: int, act: str, norm: Norm) -> nn.Module:
    if k >= level:
        return _lateral(in_channels, width, norm, act)
    pools = [nn.MaxPool2d(3, 2, 1) for _ in range(level - k - 1)]
    return nn.Sequential(*pools, ConvNormAct(in_channels, width, 3, 2, norm=norm, act=act))


class ASFF(nn.Module):
    """Adaptively spatial feature fusion (Liu et al. 2019) at every level: one :class:`AsffLevel` per input."""

    def __init__(self, in_channels: list[int], out: int, compress: int, act: str, norm: str, norm_eps: float,
                 norm_momentum: float):
        super().__init__()
        norm_ = Norm(norm, norm_eps, norm_momentum)
        self.levels = nn.ModuleList(AsffLevel(in_channels, level, out, compress, act, norm_)
                                    for level in range(len(in_channels)))

    def forward(self, xs: List[torch.Tensor]) -> List[torch.Tensor]:
        outs: List[torch.Tensor] = []
        for level in self.levels:
            outs.append(level(xs))
        return outs


def _asff_infer(in_shapes, out, compress, act, norm, norm_eps, norm_momentum):
    _halving(in_shapes, "asff")
    t = Tally()
    norm_ = Norm(norm, norm_eps, norm_momentum)
    return t.result(**{f"p{level}": AsffLevel.tally(t, in_shapes, level, out, compress, act, norm_)
                       for level in range(len(in_shapes))})


ASFF_SPEC = BlockSpec(
    name="asff", aliases=("adaptive_spatial_fusion",), module=ASFF, infer=_asff_infer, arity=MANY,
    params=(_out(256, "width: channels every level is resized to and every output has"),
            Param("compress", int, 16, "channels of each level's 1x1 weight conv before the per-pixel softmax",
                  low=1, high=1024),
            common.act("leaky_relu", doc="activation of every conv-norm-act (YOLOv3-ASFF: leaky ReLU 0.1)"),
            common.norm(), *common.norm_settings()),
    doc="ASFF: at every level, all levels resized to it and fused with per-pixel softmax weights learned by 1x1 "
        "convs, then a 3x3 conv; inputs fine to coarse, each half the previous size, outputs p0.. in that order.",
    paper="Learning Spatial Fusion for Single-Shot Object Detection (Liu, Huang and Wang 2019)",
    examples=({"out": 16, "inputs": [[16, 32, 32], [24, 16, 16], [32, 8, 8]]},),
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
    return [FPN, PAN, FPN_PAN, BIFPN, ASFF_SPEC, ASPP_SPEC, PSP]
