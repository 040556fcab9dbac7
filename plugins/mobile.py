"""Mobile blocks: inverted residuals (MobileNetV2/V3), MBConv and Fused-MBConv (EfficientNet V1/V2), ShuffleNet v1
and v2 units, and SqueezeNet's Fire module.

Each mirrors torchvision's implementation (bias flags, SE layout, channel rounding) so the zoo graphs built from them
match the reference parameter counts exactly. Every module's ``tally`` walks the same layers as its ``__init__``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.tally import infer_with
from nascore.errors import ShapeError
from nascore.blocks.layers import (
    ConvNormAct,
    DropPath,
    Norm,
    SqueezeExcite,
    channel_shuffle,
    make_divisible,
)
from nascore.blocks.spec import REQUIRED

# -- inverted residuals ---------------------------------------------------------------------------------------------


def _ir_mid(in_channels: int, expand: float, mid: int | None) -> int:
    """MobileNetV2's hidden width: ``int(round(in * expand))`` unless given outright (MobileNetV3 lists it)."""
    return int(round(in_channels * expand)) if mid is None else mid


class _ExpandDepthwiseProject(nn.Module):
    """The skeleton MobileNetV2/V3's inverted residual and EfficientNet's MBConv share: 1x1 expand (skipped when
    mid == in), depthwise kxk, optional SE, linear 1x1 project; identity shortcut with stochastic depth when the
    shape allows. The subclasses only decide the widths and the SE flavour."""

    def __init__(self, in_channels, out, mid, kernel, stride, act, se_channels, se_act, se_gate, drop_path, norm):
        super().__init__()
        self.expand = ConvNormAct(in_channels, mid, 1, norm=norm, act=act) if mid != in_channels else nn.Identity()
        self.dw = ConvNormAct(mid, mid, kernel, stride, groups=mid, norm=norm, act=act)
        self.se = SqueezeExcite(mid, se_channels, se_act, se_gate) if se_channels else nn.Identity()
        self.project = ConvNormAct(mid, out, 1, norm=norm, act="none")
        self.use_res = stride == 1 and in_channels == out
        self.drop_path = DropPath(drop_path) if self.use_res else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        if self.use_res:
            y = self.drop_path(y)
            y += x  # in place, like torchvision: y is a norm's output, which its backward does not need
        return y

    @staticmethod
    def tally_body(t, shape, out, mid, kernel, stride, act, se_channels, se_act, se_gate, norm):
        if mid != shape[0]:
            shape = ConvNormAct.tally(t, shape, mid, 1, norm=norm, act=act)
        shape = ConvNormAct.tally(t, shape, mid, kernel, stride, groups=mid, norm=norm, act=act)
        if se_channels:
            shape = SqueezeExcite.tally(t, shape, se_channels, se_act, se_gate)
        return ConvNormAct.tally(t, shape, out, 1, norm=norm, act="none")


class InvertedResidual(_ExpandDepthwiseProject):
    """1x1 expand (skipped when mid == in), depthwise kxk, optional SE, linear 1x1 project; identity shortcut at
    stride 1 when in == out (torchvision's mobilenetv2 / mobilenetv3 InvertedResidual).

    SE is MobileNetV3's: squeeze channels = make_divisible(mid // 4, 8), ReLU, hard-sigmoid gate, after the depthwise.
    [MobileNetV2: Inverted Residuals and Linear Bottlenecks, Sandler et al. 2018; Searching for MobileNetV3, Howard
    et al. 2019]
    """

    def __init__(self, in_channels, out, kernel, stride, expand, mid, act, se, drop_path, norm_eps, norm_momentum):
        mid = _ir_mid(in_channels, expand, mid)
        super().__init__(in_channels, out, mid, kernel, stride, act, _ir_se(mid, se), "relu", "hard_sigmoid",
                         drop_path, Norm("batch", norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, out, kernel, stride, expand, mid, act, se, drop_path, norm_eps, norm_momentum):
        mid = _ir_mid(shape[0], expand, mid)
        return _ExpandDepthwiseProject.tally_body(t, shape, out, mid, kernel, stride, act, _ir_se(mid, se), "relu",
                                                  "hard_sigmoid", Norm("batch", norm_eps, norm_momentum))


def _ir_se(mid: int, se: bool) -> int:
    """MobileNetV3's squeeze width: mid // 4 rounded to 8 (0: no SE)."""
    return make_divisible(mid // 4, 8) if se else 0


INVERTED_RESIDUAL = BlockSpec(
    name="inverted_residual", aliases=("mobilenet_v2_block", "mbv2"), module=InvertedResidual,
    infer=infer_with(InvertedResidual),
    params=(common.out(), common.odd_kernel(3), common.stride(),
            Param("expand", float, 6.0, "expansion ratio: mid = round(in x expand) (ignored when mid is given)",
                  low=1.0, high=16.0),
            Param("mid", int, None, "expanded channels outright (MobileNetV3 lists them); default in x expand",
                  low=1, high=1 << 16, channels=True),
            common.act("relu6"),
            Param("se", bool, False, "MobileNetV3 squeeze-excitation (mid // 4 rounded to 8, hard-sigmoid gate)"),
            common.drop_path(), *common.norm_settings()),
    doc="MobileNetV2/V3 inverted residual: 1x1 expand, depthwise kxk, optional SE, linear 1x1 project.",
    paper="MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al. 2018); "
          "Searching for MobileNetV3 (Howard et al. 2019)",
)


class MBConv(_ExpandDepthwiseProject):
    """EfficientNet's MBConv (torchvision efficientnet.MBConv): 1x1 expand to make_divisible(in x expand, 8) (skipped
    when that equals in), depthwise kxk, SE (squeeze = in x se_ratio of the block input, ``act`` inside, sigmoid
    gate), linear 1x1 project; stochastic depth on the branch of the identity shortcut.

    [EfficientNet: Rethinking Model Scaling for CNNs, Tan & Le 2019; MnasNet, Tan et al. 2019]
    """

    def __init__(self, in_channels, out, kernel, stride, expand, se_ratio, act, drop_path, norm_eps, norm_momentum):
        mid = make_divisible(in_channels * expand, 8)
        super().__init__(in_channels, out, mid, kernel, stride, act, _mb_se(in_channels, se_ratio), act, "sigmoid",
                         drop_path, Norm("batch", norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, out, kernel, stride, expand, se_ratio, act, drop_path, norm_eps, norm_momentum):
        mid = make_divisible(shape[0] * expand, 8)
        return _ExpandDepthwiseProject.tally_body(t, shape, out, mid, kernel, stride, act, _mb_se(shape[0], se_ratio),
                                                  act, "sigmoid", Norm("batch", norm_eps, norm_momentum))


def _mb_se(in_channels: int, se_ratio: float) -> int:
    """EfficientNet's squeeze width: a fraction of the block's input channels (0: no SE)."""
    return max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0


MBCONV = BlockSpec(
    name="mbconv", aliases=("mb_conv",), module=MBConv, infer=infer_with(MBConv),
    params=(common.out(), common.odd_kernel(3), common.stride(),
            Param("expand", int, 6, "expansion ratio: mid = make_divisible(in x expand, 8)", low=1, high=8),
            common.se_ratio(0.25, "squeeze-excitation ratio of the block's input channels (0 disables SE)"),
            common.act("silu"), common.drop_path(), *common.norm_settings()),
    doc="EfficientNet MBConv: 1x1 expand, depthwise kxk, SE, linear 1x1 project, stochastic depth.",
    paper="EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks (Tan & Le 2019)",
)


class FusedMBConv(nn.Module):
    """EfficientNetV2's Fused-MBConv (torchvision efficientnet.FusedMBConv): a full kxk conv (stride) expands to
    make_divisible(in x expand, 8), optional SE, then a linear 1x1 project; when that equals in, a single kxk
    conv-BN-act to ``out`` instead. Stochastic depth on the branch of the identity shortcut.

    [EfficientNetV2: Smaller Models and Faster Training, Tan & Le 2021]
    """

    def __init__(self, in_channels, out, kernel, stride, expand, se_ratio, act, drop_path, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        mid = make_divisible(in_channels * expand, 8)
        fused_out = mid if mid != in_channels else out
        self.conv = ConvNormAct(in_channels, fused_out, kernel, stride, norm=norm, act=act)
        self.se = (SqueezeExcite(fused_out, max(1, int(in_channels * se_ratio)), act, "sigmoid") if se_ratio > 0
                   else nn.Identity())
        self.project = ConvNormAct(mid, out, 1, norm=norm, act="none") if mid != in_channels else nn.Identity()
        self.use_res = stride == 1 and in_channels == out
        self.drop_path = DropPath(drop_path) if self.use_res else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.conv(x)))
        if self.use_res:
            y = x + self.drop_path(y)
        return y

    @staticmethod
    def tally(t, shape, out, kernel, stride, expand, se_ratio, act, drop_path, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        c = shape[0]
        mid = make_divisible(c * expand, 8)
        shape = ConvNormAct.tally(t, shape, mid if mid != c else out, kernel, stride, norm=norm, act=act)
        if se_ratio > 0:
            shape = SqueezeExcite.tally(t, shape, max(1, int(c * se_ratio)), act, "sigmoid")
        if mid != c:
            shape = ConvNormAct.tally(t, shape, out, 1, norm=norm, act="none")
        return shape


FUSED_MBCONV = BlockSpec(
    name="fused_mbconv", aliases=("fused_mb_conv",), module=FusedMBConv, infer=infer_with(FusedMBConv),
    params=(common.out(), common.odd_kernel(3), common.stride(),
            Param("expand", int, 4, "expansion ratio: mid = make_divisible(in x expand, 8)", low=1, high=8),
            common.se_ratio(0.0, "squeeze-excitation ratio of the block's input channels (0 disables SE)"),
            common.act("silu"), common.drop_path(), *common.norm_settings()),
    doc="EfficientNetV2 Fused-MBConv: kxk expand conv then linear 1x1 project (one kxk conv when expand is 1).",
    paper="EfficientNetV2: Smaller Models and Faster Training (Tan & Le 2021)",
)

# -- ShuffleNet -----------------------------------------------------------------------------------------------------


def _shuffle_v1_widths(in_channels, out, stride, groups, mid_ratio, first_group):
    """(pointwise groups, bottleneck width, branch output) of a ShuffleNet v1 unit, or a ShapeError."""
    branch = out - in_channels if stride > 1 else out
    if stride == 1 and in_channels != out:
        raise ShapeError(f"shufflenet_v1 at stride 1 adds its input back, so out must equal the input channels, "
                         f"got out={out} for {in_channels} input channels")
    if branch < 1:
        raise ShapeError(f"shufflenet_v1 at stride {stride} concatenates its input, so out must exceed the input "
                         f"channels, got out={out} for {in_channels} input channels")
    mid = int(out * mid_ratio)
    if mid < 1:
        raise ShapeError(f"shufflenet_v1 bottleneck out x mid_ratio = {out} x {mid_ratio:g} rounds to 0 channels")
    first = 1 if first_group else groups
    if in_channels % first or mid % groups or branch % groups:
        raise ShapeError(f"shufflenet_v1 with groups={groups} needs input ({in_channels}"
                         f"{', ungrouped' if first_group else ''}), bottleneck ({mid}) and branch output ({branch}) "
                         f"channels divisible by it")
    return first, mid, branch


class ShuffleV1(nn.Module):
    """ShuffleNet v1 unit: group 1x1 conv (BN, ReLU), channel shuffle, depthwise kxk (stride, BN), group 1x1 conv (BN).

    Stride 1: ReLU(x + branch). Stride 2: concat(3x3 avg-pool of x, ReLU(branch)), the branch giving out - in
    channels. ``first_group`` leaves the first 1x1 ungrouped (the paper's first unit of stage 2, whose input is small).
    [ShuffleNet: An Extremely Efficient CNN for Mobile Devices, Zhang et al. 2018]
    """

    def __init__(self, in_channels, out, kernel, stride, groups, mid_ratio, first_group, drop_path, norm_eps,
                 norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        first, mid, branch = _shuffle_v1_widths(in_channels, out, stride, groups, mid_ratio, first_group)
        self.reduce = ConvNormAct(in_channels, mid, 1, groups=first, norm=norm, act="relu")
        self.groups = groups
        self.dw = ConvNormAct(mid, mid, kernel, stride, groups=mid, norm=norm, act="none")
        self.expand = ConvNormAct(mid, branch, 1, groups=groups, norm=norm, act="none")
        self.concat = stride > 1
        self.shortcut = nn.AvgPool2d(3, stride, 1) if stride > 1 else nn.Identity()
        self.drop_path = nn.Identity() if stride > 1 else DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(self.dw(channel_shuffle(self.reduce(x), self.groups)))
        if self.concat:
            return torch.cat([self.shortcut(x), F.relu(y)], 1)
        return F.relu(x + self.drop_path(y))

    @staticmethod
    def tally(t, shape, out, kernel, stride, groups, mid_ratio, first_group, drop_path, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        first, mid, branch = _shuffle_v1_widths(shape[0], out, stride, groups, mid_ratio, first_group)
        y = ConvNormAct.tally(t, shape, mid, 1, groups=first, norm=norm, act="relu")
        y = ConvNormAct.tally(t, y, mid, kernel, stride, groups=mid, norm=norm, act="none")
        y = ConvNormAct.tally(t, y, branch, 1, groups=groups, norm=norm, act="none")
        if stride > 1:
            pooled = t.pool(shape, 3, stride, 1)
            if pooled[1:] != y[1:]:
                raise ShapeError(f"shufflenet_v1 shortcut pooling gives {pooled[1]}x{pooled[2]} but the branch "
                                 f"{y[1]}x{y[2]}; use an odd kernel")
        return (out, *y[1:])


SHUFFLENET_V1 = BlockSpec(
    name="shufflenet_v1", aliases=("shuffle_v1",), module=ShuffleV1, infer=infer_with(ShuffleV1),
    params=(common.out(), common.odd_kernel(3, "depthwise kernel size"), common.stride(),
            Param("groups", int, 3, "groups of the 1x1 convolutions (channels must divide)", low=1, high=64),
            Param("mid_ratio", float, 0.25, "bottleneck width as a fraction of out", low=0.01, high=4.0),
            Param("first_group", bool, False, "leave the first 1x1 ungrouped (first unit of the first stage)"),
            common.drop_path(), *common.norm_settings()),
    doc="ShuffleNet v1 unit: group 1x1, channel shuffle, depthwise, group 1x1; stride 2 concats an avg-pool shortcut.",
    paper="ShuffleNet: An Extremely Efficient Convolutional Neural Network for Mobile Devices (Zhang et al. 2018)",
)


def _shuffle_v2_check(in_channels, out, stride):
    if out % 2:
        raise ShapeError(f"shufflenet_v2 splits its output in two halves, so out must be even, got out={out}")
    if stride == 1 and in_channels != out:
        raise ShapeError(f"shufflenet_v2 at stride 1 keeps half its input, so out must equal the input channels, "
                         f"got out={out} for {in_channels} input channels")


class ShuffleV2(nn.Module):
    """ShuffleNet v2 unit (torchvision shufflenetv2.InvertedResidual).

    Stride 1: split the channels in two halves, keep one, run 1x1-BN-ReLU, depthwise kxk-BN, 1x1-BN-ReLU on the
    other, concat, shuffle. Stride 2: both branches see the whole input (branch 1: depthwise kxk-BN, 1x1-BN-ReLU),
    each giving out / 2 channels.
    [ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design, Ma et al. 2018]
    """

    def __init__(self, in_channels, out, kernel, stride, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm("batch", norm_eps, norm_momentum)
        _shuffle_v2_check(in_channels, out, stride)
        half = out // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(ConvNormAct(in_channels, in_channels, kernel, stride, groups=in_channels,
                                                     norm=norm, act="none"),
                                         ConvNormAct(in_channels, half, 1, norm=norm, act="relu"))
        else:
            self.branch1 = nn.Identity()
        self.branch2 = nn.Sequential(ConvNormAct(in_channels if stride > 1 else half, half, 1, norm=norm, act="relu"),
                                     ConvNormAct(half, half, kernel, stride, groups=half, norm=norm, act="none"),
                                     ConvNormAct(half, half, 1, norm=norm, act="relu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            y = torch.cat([x1, self.branch2(x2)], 1)
        else:
            y = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return channel_shuffle(y, 2)

    @staticmethod
    def tally(t, shape, out, kernel, stride, norm_eps, norm_momentum):
        norm = Norm("batch", norm_eps, norm_momentum)
        c = shape[0]
        _shuffle_v2_check(c, out, stride)
        half = out // 2
        if stride > 1:
            y = ConvNormAct.tally(t, shape, c, kernel, stride, groups=c, norm=norm, act="none")
            ConvNormAct.tally(t, y, half, 1, norm=norm, act="relu")
            y = shape
        else:
            y = (half, *shape[1:])
        y = ConvNormAct.tally(t, y, half, 1, norm=norm, act="relu")
        y = ConvNormAct.tally(t, y, half, kernel, stride, groups=half, norm=norm, act="none")
        y = ConvNormAct.tally(t, y, half, 1, norm=norm, act="relu")
        return (out, *y[1:])


SHUFFLENET_V2 = BlockSpec(
    name="shufflenet_v2", aliases=("shuffle_v2",), module=ShuffleV2, infer=infer_with(ShuffleV2),
    params=(common.out(), common.odd_kernel(3, "depthwise kernel size"), common.stride(), *common.norm_settings()),
    doc="ShuffleNet v2 unit: channel split, 1x1-depthwise-1x1 on one half, concat, shuffle; stride 2 runs both.",
    paper="ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design (Ma et al. 2018)",
)

# -- SqueezeNet -----------------------------------------------------------------------------------------------------


class Fire(nn.Module):
    """SqueezeNet Fire module (torchvision squeezenet.Fire): squeeze 1x1, then expand 1x1 and 3x3 in parallel,
    concatenated; convolutions with bias and ReLU, no norm by default.

    [SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size, Iandola et al. 2016]
    """

    def __init__(self, in_channels, squeeze, expand1x1, expand3x3, norm, norm_eps, norm_momentum):
        super().__init__()
        norm = Norm(norm, norm_eps, norm_momentum)
        self.squeeze = ConvNormAct(in_channels, squeeze, 1, norm=norm, act="relu")
        self.expand1x1 = ConvNormAct(squeeze, expand1x1, 1, norm=norm, act="relu")
        self.expand3x3 = ConvNormAct(squeeze, expand3x3, 3, norm=norm, act="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)

    @staticmethod
    def tally(t, shape, squeeze, expand1x1, expand3x3, norm, norm_eps, norm_momentum):
        norm = Norm(norm, norm_eps, norm_momentum)
        s = ConvNormAct.tally(t, shape, squeeze, 1, norm=norm, act="relu")
        ConvNormAct.tally(t, s, expand1x1, 1, norm=norm, act="relu")
        e = ConvNormAct.tally(t, s, expand3x3, 3, norm=norm, act="relu")
        return (expand1x1 + expand3x3, *e[1:])


FIRE = BlockSpec(
    name="fire", aliases=("fire_module",), module=Fire, infer=infer_with(Fire),
    params=(Param("squeeze", int, REQUIRED, "channels of the squeeze 1x1 conv", low=1, high=1 << 16, channels=True),
            Param("expand1x1", int, REQUIRED, "channels of the expand 1x1 conv", low=1, high=1 << 16, channels=True),
            Param("expand3x3", int, REQUIRED, "channels of the expand 3x3 conv", low=1, high=1 << 16,
                  channels=True),
            common.norm("none"), *common.norm_settings()),
    doc="SqueezeNet Fire module: squeeze 1x1, then expand 1x1 and 3x3 in parallel, concatenated.",
    paper="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size (Iandola et al. 2016)",
)


@hookimpl
def nascore_blocks():
    return [INVERTED_RESIDUAL, MBCONV, FUSED_MBCONV, SHUFFLENET_V1, SHUFFLENET_V2, FIRE]
