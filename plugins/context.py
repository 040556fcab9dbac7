"""Context and adaptive-sampling blocks: deformable convolution v2, self-calibrated convolution, strip pooling.

Each follows its paper's official code (DCNv2 as torchvision and mmcv implement it, SCNet's ``SCConv``, SPNet's
``SPBlock``); every module's ``tally`` walks the same layers as its ``__init__``.

The deformable convolution runs on ``torchvision.ops.deform_conv2d`` where torchvision imports, and on
:func:`deform_conv2d_torch` (pure torch, bilinear sampling by ``grid_sample``) otherwise, and always on the meta
device, so the estimator counts its MACs as those of a convolution of the same shape (the sampling is free, as it
is for fvcore). tests/plugins/test_context.py holds the pure-torch function equal to torchvision's outputs recorded
by ``benchmarks/make_deform_conv_reference.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.layers import ConvNormAct, Norm, act_params, make_act, make_norm, norm_kind
from nascore.blocks.tally import fmt_shape, infer_with, pair, same_padding
from nascore.errors import ShapeError

# -- deformable convolution -----------------------------------------------------------------------------------------


def deform_conv2d_torch(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                        stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                        dilation: tuple[int, int] = (1, 1), mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deformable convolution in pure torch, with torchvision's arguments and layout.

    ``offset`` is (N, 2 x offset_groups x kh x kw, Ho, Wo), for each offset group and kernel point (row-major) a
    (dy, dx) pair; ``mask`` (DCNv2's modulation), when given, is (N, offset_groups x kh x kw, Ho, Wo). Kernel point
    (i, j) of output (y, x) samples the input bilinearly at (y s - p + i d + dy, x s - p + j d + dx), zero outside
    (a corner outside the map contributes 0, as in torchvision). ``groups`` is read from ``weight``'s shape.
    [Deformable ConvNets v2: More Deformable, Better Results, Zhu et al. 2019]
    """
    n, c, h, w = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    k = kh * kw
    groups = c // group_channels
    offset_groups = offset.shape[1] // (2 * k)
    ho, wo = offset.shape[2], offset.shape[3]
    # where each kernel point of each output position samples, before its offset: (K, Ho, 1) and (K, 1, Wo)
    points = torch.arange(k, device=x.device)
    ys = ((points // kw) * dilation[0]).view(k, 1, 1) + (torch.arange(ho, device=x.device) * stride[0]
                                                            - padding[0]).view(1, ho, 1)
    xs = ((points % kw) * dilation[1]).view(k, 1, 1) + (torch.arange(wo, device=x.device) * stride[1]
                                                           - padding[1]).view(1, 1, wo)
    offset = offset.reshape(n, offset_groups, k, 2, ho, wo)
    py = ys.to(x.dtype) + offset[:, :, :, 0]
    px = xs.to(x.dtype) + offset[:, :, :, 1]
    # grid_sample's coordinates with align_corners=False: pixel p of a size-s axis is (2p + 1) / s - 1
    grid = torch.stack(((2 * px + 1) / w - 1, (2 * py + 1) / h - 1), dim=-1)
    grid = grid.reshape(n * offset_groups, k * ho, wo, 2)
    cols = F.grid_sample(x.reshape(n * offset_groups, c // offset_groups, h, w), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)
    cols = cols.reshape(n, offset_groups, c // offset_groups, k, ho, wo)
    if mask is not None:
        cols = cols * mask.reshape(n, offset_groups, 1, k, ho, wo)
    cols = cols.reshape(n, groups, group_channels * k, ho * wo)
    out = torch.einsum("ngjl,goj->ngol", cols, weight.reshape(groups, out_channels // groups, group_channels * k))
    out = out.reshape(n, out_channels, ho, wo)
    if bias is not None:
        out = out + bias.view(1, out_channels, 1, 1)
    return out


@functools.cache
def _torchvision_op() -> Callable[..., torch.Tensor] | None:
    try:
        from torchvision.ops import deform_conv2d
    except Exception:  # noqa: BLE001 - missing, or built for another torch (its import then raises RuntimeError)
        return None
    return deform_conv2d


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  stride: tuple[int, int] = (1, 1), padding: tuple[int, int] = (0, 0),
                  dilation: tuple[int, int] = (1, 1), mask: torch.Tensor | None = None) -> torch.Tensor:
    """torchvision's ``deform_conv2d`` where it imports, else :func:`deform_conv2d_torch` (always on the meta device
    and under TorchScript)."""
    if not torch.jit.is_scripting() and x.device.type != "meta":
        op = _torchvision_op()
        if op is not None:
            return op(x, offset, weight, bias, stride=stride, padding=padding, dilation=dilation, mask=mask)
    return deform_conv2d_torch(x, offset, weight, bias, stride, padding, dilation, mask)


def _check_deform(in_channels: int, out: int, groups: int, offset_groups: int) -> None:
    if in_channels % groups or out % groups:
        raise ShapeError(f"parameter 'groups' is {groups}: it must divide the input channels ({in_channels}) and "
                         f"'out' ({out})")
    if in_channels % offset_groups:
        raise ShapeError(f"parameter 'offset_groups' is {offset_groups}: it must divide the input channels "
                         f"({in_channels})")


class DeformConv2d(nn.Module):
    """Deformable convolution whose offsets (and, modulated, mask) a zero-initialised convolution of the same kernel,
    stride and dilation predicts from the input: at initialisation it is the plain convolution (times 0.5 when
    modulated, the sigmoid of 0). Offsets come first in the predictor's output, in torchvision's layout, then the
    mask logits. [Deformable Convolutional Networks, Dai et al. 2017; Deformable ConvNets v2, Zhu et al. 2019]
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 3, stride: int = 1,
                 dilation: int = 1, groups: int = 1, offset_groups: int = 1, modulated: bool = True,
                 bias: bool = True):
        super().__init__()
        _check_deform(in_channels, out_channels, groups, offset_groups)
        kh, kw = pair(kernel)
        self.stride, self.dilation = pair(stride), pair(dilation)
        self.padding = same_padding((kh, kw), self.dilation)
        self.n_offsets = 2 * offset_groups * kh * kw
        self.modulated = modulated
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.register_parameter("bias", nn.Parameter(torch.empty(out_channels)) if bias else None)
        self.offset = nn.Conv2d(in_channels, self.n_offsets * (3 if modulated else 2) // 2, (kh, kw), self.stride,
                                self.padding, self.dilation, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))   # nn.Conv2d's initialisation
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.offset(x)
        offset = predicted[:, :self.n_offsets]
        mask = torch.sigmoid(predicted[:, self.n_offsets:]) if self.modulated else None
        return deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding, self.dilation, mask)

    def extra_repr(self) -> str:
        out, cg, kh, kw = self.weight.shape
        return (f"out_channels={out}, kernel=({kh}, {kw}), stride={self.stride}, dilation={self.dilation}, "
                f"modulated={self.modulated}, bias={self.bias is not None}")


class DeformConvNormAct(nn.Sequential):
    """Deformable convolution v2 (or v1), normalisation, activation: ``conv_bn_act`` with learned sampling."""

    def __init__(self, in_channels, out, kernel, stride, dilation, groups, offset_groups, modulated, norm, act,
                 norm_eps, norm_momentum):
        super().__init__()
        self.conv = DeformConv2d(in_channels, out, kernel, stride, dilation, groups, offset_groups, modulated,
                                 bias=norm == "none")
        if norm != "none":
            self.norm = make_norm(Norm(norm, norm_eps, norm_momentum), out)
        if act != "none":
            self.act = make_act(act)

    @staticmethod
    def tally(t, shape, out, kernel, stride, dilation, groups, offset_groups, modulated, norm, act, norm_eps,
              norm_momentum):
        _check_deform(shape[0], out, groups, offset_groups)
        kh, kw = pair(kernel)
        t.conv(shape, offset_groups * kh * kw * (3 if modulated else 2), kernel, stride, None, dilation, bias=True)
        shape = t.conv(shape, out, kernel, stride, None, dilation, groups, bias=norm == "none")
        shape = t.norm(shape, norm_kind(norm))
        t.add_params(act_params(act))
        return shape


DEFORM_CONV = BlockSpec(
    name="deform_conv", aliases=("dcn", "dcnv2"), module=DeformConvNormAct, infer=infer_with(DeformConvNormAct),
    params=(common.out(), common.kernel(3),
            common.stride(), Param("dilation", int, 1, "dilation of the sampling grid before the offsets", low=1,
                                   high=64),
            Param("groups", int, 1, "convolution groups (the input channels and 'out' must divide)", low=1,
                  high=1 << 16),
            Param("offset_groups", int, 1, "channel groups with their own offsets and mask (the input channels "
                  "must divide)", low=1, high=1 << 16),
            Param("modulated", bool, True, "learn a mask weighting each sample (DCNv2); false is DCNv1"),
            common.norm(), common.act(), *common.norm_settings()),
    doc="Deformable convolution v2: each kernel point samples at a learned offset, weighted by a learned mask.",
    examples=({"out": 32}, {"out": 32, "stride": 2, "groups": 4, "offset_groups": 2, "modulated": False}),
    paper="Deformable Convolutional Networks (Dai et al. 2017); Deformable ConvNets v2: More Deformable, Better "
          "Results (Zhu et al. 2019)",
)

# -- self-calibrated convolution ------------------------------------------------------------------------------------


def _sc_widths(in_channels: int, out: int, pooling_r: int, shape=None) -> tuple[int, int]:
    """The calibrated halves of the input and output channels (the plain branch takes the rest)."""
    if in_channels < 2 or out < 2:
        raise ShapeError(f"a self-calibrated convolution splits its channels in two: it needs at least 2 input "
                         f"channels and 'out' >= 2, got {in_channels} in and out={out}")
    if shape is not None and min(shape[1:]) < pooling_r:
        raise ShapeError(f"parameter 'pooling_r' is {pooling_r}: the calibration path average-pools by it, which "
                         f"needs an input of at least {pooling_r}x{pooling_r}, got {fmt_shape(shape)}")
    return in_channels // 2, out // 2


class SCConv(nn.Module):
    """Self-calibrated convolution: the input's channels split in two halves X1, X2 (output Y1, Y2 likewise).

    Y2 = K1(X2), a plain 3x3 convolution (stride). Y1 is calibrated: T = AvgPool_r(X1); X1' = Up(K2(T));
    Y1 = K4(K3(X1) * sigmoid(X1 + X1')), K4 carrying the stride. Output [Y1, Y2], then the activation. Every Ki is a
    3x3 convolution followed by batch norm, as in SCNet's code; ``Up`` is nearest (the code) or bilinear (the paper).
    [Improving Convolutional Networks with Self-Calibrated Convolutions, Liu et al. CVPR 2020]
    """

    def __init__(self, in_channels, out, stride, pooling_r, upsample, act, norm_eps, norm_momentum):
        super().__init__()
        half_in, half_out = _sc_widths(in_channels, out, pooling_r)
        norm = Norm("batch", norm_eps, norm_momentum)
        self.splits = [half_in, in_channels - half_in]
        self.upsample = upsample
        self.k1 = ConvNormAct(in_channels - half_in, out - half_out, 3, stride, norm=norm, act="none")
        self.pool = nn.AvgPool2d(pooling_r, pooling_r)
        self.k2 = ConvNormAct(half_in, half_in, 3, norm=norm, act="none")
        self.k3 = ConvNormAct(half_in, half_in, 3, norm=norm, act="none")
        self.k4 = ConvNormAct(half_in, half_out, 3, stride, norm=norm, act="none")
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, self.splits, 1)
        up = F.interpolate(self.k2(self.pool(x1)), size=x1.shape[-2:], mode=self.upsample)
        y1 = self.k4(self.k3(x1) * torch.sigmoid(x1 + up))
        return self.act(torch.cat([y1, self.k1(x2)], 1))

    @staticmethod
    def tally(t, shape, out, stride, pooling_r, upsample, act, norm_eps, norm_momentum):
        half_in, half_out = _sc_widths(shape[0], out, pooling_r, shape)
        x1, x2 = (half_in,) + shape[1:], (shape[0] - half_in,) + shape[1:]
        ConvNormAct.tally(t, x2, out - half_out, 3, stride, act="none")
        small = ConvNormAct.tally(t, t.pool(x1, pooling_r, pooling_r), half_in, 3, act="none")
        t.upsample(small, x1[1:], mode=upsample)
        y1 = ConvNormAct.tally(t, ConvNormAct.tally(t, x1, half_in, 3, act="none"), half_out, 3, stride, act="none")
        t.add_params(act_params(act))
        return (out,) + y1[1:]      # y2 has y1's size: both are padded 3x3 convolutions at one stride


SCCONV = BlockSpec(
    name="scconv", aliases=("self_calibrated_conv",), module=SCConv, infer=infer_with(SCConv),
    params=(common.out(), common.stride(),
            Param("pooling_r", int, 4, "down-sampling rate r of the calibration path's average pooling (SCNet: 4)",
                  low=1, high=64),
            Param("upsample", str, "nearest", "how the calibration is brought back to full size (SCNet's code: "
                  "nearest; the paper: bilinear)", choices=("nearest", "bilinear")),
            common.act(), *common.norm_settings()),
    doc="Self-calibrated convolution: half the channels are gated by a 3x3 conv computed at 1/r scale (SCNet).",
    examples=({"out": 32}, {"out": 32, "stride": 2, "upsample": "bilinear"}),
    paper="Improving Convolutional Networks with Self-Calibrated Convolutions (Liu et al. CVPR 2020)",
)

# -- strip pooling --------------------------------------------------------------------------------------------------


def _strip_mid(in_channels: int, mid_ratio: float) -> int:
    return max(1, round(in_channels * mid_ratio))


class StripPooling(nn.Module):
    """Strip pooling module (SPM): average each row (H x 1) and each column (1 x W), convolve each strip along its
    length (k x 1 and 1 x k, batch norm), expand both back to H x W and add, activate, 1x1 convolution (bias),
    sigmoid: a gate that reweights the input, z = x * sigmoid(f(y_h + y_v)). SPNet's ``SPBlock`` has the batch norms
    and the ReLU after the sum; ``act: none`` gives the paper's equations exactly.
    [Strip Pooling: Rethinking Spatial Pooling for Scene Parsing, Hou et al. CVPR 2020]
    """

    def __init__(self, in_channels, mid_ratio, kernel, act, norm_eps, norm_momentum):
        super().__init__()
        mid = _strip_mid(in_channels, mid_ratio)
        norm = Norm("batch", norm_eps, norm_momentum)
        self.conv_h = ConvNormAct(in_channels, mid, (kernel, 1), norm=norm, act="none")
        self.conv_w = ConvNormAct(in_channels, mid, (1, kernel), norm=norm, act="none")
        self.act = make_act(act)
        self.fuse = nn.Conv2d(mid, in_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_h = self.conv_h(x.mean(3, keepdim=True))    # N x mid x H x 1
        y_v = self.conv_w(x.mean(2, keepdim=True))    # N x mid x 1 x W; the sum broadcasts both to H x W
        return x * torch.sigmoid(self.fuse(self.act(y_h + y_v)))

    @staticmethod
    def tally(t, shape, mid_ratio, kernel, act, norm_eps, norm_momentum):
        c, h, w = shape
        mid = _strip_mid(c, mid_ratio)
        ConvNormAct.tally(t, t.adaptive_avg(shape, (h, 1)), mid, (kernel, 1), act="none")
        ConvNormAct.tally(t, t.adaptive_avg(shape, (1, w)), mid, (1, kernel), act="none")
        t.add_params(act_params(act))
        t.conv((mid, h, w), c, 1, bias=True)
        return shape


STRIP_POOL = BlockSpec(
    name="strip_pool", aliases=("strip_pooling", "spm"), module=StripPooling, infer=infer_with(StripPooling),
    params=(Param("mid_ratio", float, 1.0, "channels of the strip convolutions as a fraction of the input's "
                  "(SPNet: 1)", low=0.01, high=4.0),
            Param("kernel", int, 3, "length of each strip's 1D convolution (odd, so the strips keep their length)",
                  choices=(1, 3, 5, 7, 9, 11)),
            common.act(), *common.norm_settings()),
    doc="Strip pooling module (SPNet): row and column average pools, convolved, fused into a sigmoid gate.",
    paper="Strip Pooling: Rethinking Spatial Pooling for Scene Parsing (Hou et al. CVPR 2020)",
)


@hookimpl
def nascore_blocks():
    return [DEFORM_CONV, SCCONV, STRIP_POOL]
