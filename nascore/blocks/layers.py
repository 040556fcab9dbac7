"""Small layers that blocks are made of, each with a ``tally`` twin that predicts it without weights.

Public, like ``timm.layers``: third-party blocks should build from these so their formulas come for free.
Options that are off become ``nn.Identity`` so every ``forward`` is straight-line code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nascore.blocks.tally import Tally, pair, same_padding
from nascore.blocks.spec import Shape

ACTIVATIONS = ("relu", "relu6", "leaky_relu", "prelu", "silu", "swish", "hard_swish", "hard_sigmoid", "mish",
               "gelu", "sigmoid", "none")
NORMS = ("batch", "group", "layer", "instance", "none")


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round a channel count to a multiple of ``divisor``, never below ``round_limit`` of ``value`` (EfficientNet)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


def make_act(name: str) -> nn.Module:
    """An activation module by name; ``none`` is Identity."""
    factory = {
        "relu": lambda: nn.ReLU(inplace=True), "relu6": lambda: nn.ReLU6(inplace=True),
        "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True), "prelu": nn.PReLU, "silu": lambda: nn.SiLU(inplace=True),
        "swish": lambda: nn.SiLU(inplace=True), "hard_swish": lambda: nn.Hardswish(inplace=True),
        "hard_sigmoid": lambda: nn.Hardsigmoid(inplace=True), "mish": lambda: nn.Mish(inplace=True),
        "gelu": nn.GELU, "sigmoid": nn.Sigmoid, "none": nn.Identity,
    }[name]
    return factory()


def act_params(name: str) -> int:
    """Learned parameters of an activation (PReLU has one slope)."""
    return 1 if name == "prelu" else 0


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (ConvNeXt's); channel-first in, channel-first out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def group_count(channels: int, groups: int = 32) -> int:
    """GroupNorm groups: 32 where the channels allow, else the largest common divisor."""
    return math.gcd(channels, groups)


NORM_EPS = 1e-5       # PyTorch's defaults for every norm here; a block's norm_eps / norm_momentum start from these
NORM_MOMENTUM = 0.1


@dataclass(frozen=True)
class Norm:
    """A normalisation by name with its settings: what :func:`make_norm` builds and ``ConvNormAct`` takes as ``norm``.

    ``eps`` is added to the variance by every kind; ``momentum`` weighs a batch's statistics into the running ones
    (PyTorch's convention, ``new = (1 - m) * old + m * batch``) and only matters for batch norm. Pretrained models
    differ here (torchvision's MobileNetV3: eps 1e-3, momentum 0.01), which changes the function they compute.
    """

    kind: str = "batch"
    eps: float = NORM_EPS
    momentum: float = NORM_MOMENTUM


def as_norm(norm: str | Norm) -> Norm:
    """A norm name (``"batch"``) with the default settings, or a :class:`Norm` as it is."""
    return Norm(norm) if isinstance(norm, str) else norm


def norm_kind(norm: str | Norm) -> str:
    """The name of a norm given by name or as a :class:`Norm` (what a Tally's cost rules need)."""
    return norm if isinstance(norm, str) else norm.kind


def make_norm(norm: str | Norm, channels: int) -> nn.Module:
    """A normalisation module for ``channels`` feature maps, by name or as a :class:`Norm`; ``none`` is Identity."""
    norm = as_norm(norm)
    if norm.kind == "batch":
        return nn.BatchNorm2d(channels, eps=norm.eps, momentum=norm.momentum)
    if norm.kind == "group":
        return nn.GroupNorm(group_count(channels), channels, eps=norm.eps)
    if norm.kind == "layer":
        return LayerNorm2d(channels, eps=norm.eps)
    if norm.kind == "instance":
        return nn.InstanceNorm2d(channels, eps=norm.eps, momentum=norm.momentum, affine=True)
    return nn.Identity()


class ConvNormAct(nn.Sequential):
    """Convolution, normalisation, activation: the unit nearly every block is made of.

    ``norm`` is a name or a :class:`Norm` with its settings. Bias defaults to on only without a norm (a norm's shift
    makes it redundant).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
                 padding: int | tuple[int, int] | None = None, dilation: int = 1, groups: int = 1,
                 norm: str | Norm = "batch", act: str = "relu", bias: bool | None = None):
        padding = same_padding(kernel, dilation) if padding is None else pair(padding)
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, pair(kernel), stride, padding, dilation, groups,
                              bias=(norm_kind(norm) == "none") if bias is None else bias)
        # Parts that are off are left out, not kept as Identity: a module call per layer is measurable at batch 1.
        if norm_kind(norm) != "none":
            self.norm = make_norm(norm, out_channels)
        if act != "none":
            self.act = make_act(act)

    @staticmethod
    def tally(t: Tally, shape: Shape, out_channels: int, kernel: int | tuple[int, int] = 1, stride: int = 1,
              padding: int | tuple[int, int] | None = None, dilation: int = 1, groups: int = 1,
              norm: str | Norm = "batch", act: str = "relu", bias: bool | None = None) -> Shape:
        kind = norm_kind(norm)
        shape = t.conv(shape, out_channels, kernel, stride, padding, dilation, groups,
                       bias=(kind == "none") if bias is None else bias)
        shape = t.norm(shape, kind)
        t.add_params(act_params(act))
        return shape


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False) -> torch.Tensor:
    """Drop whole residual branches per sample (stochastic depth), rescaling the kept ones."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep)


class DropPath(nn.Module):
    """Module form of :func:`drop_path`; ``drop_prob`` is mutable so a trainer can schedule it (ScheduledDropPath)."""

    def __init__(self, drop_prob: float = 0.0):
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation: global pool, reduce, activate, expand, gate, reweight channels.

    [Squeeze-and-Excitation Networks, Hu et al. 2018]
    """

    def __init__(self, channels: int, rd_channels: int, act: str = "relu", gate: str = "sigmoid"):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = make_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        s = self.gate(self.fc2(self.act(self.fc1(s))))
        return x * s

    @staticmethod
    def tally(t: Tally, shape: Shape, rd_channels: int, act: str = "relu", gate: str = "sigmoid") -> Shape:
        s = t.adaptive_avg(shape, 1)
        s = t.conv(s, rd_channels, 1, bias=True)
        t.add_params(act_params(act) + act_params(gate))
        t.conv(s, shape[0], 1, bias=True)
        return shape


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave channels across ``groups`` (ShuffleNet): reshape to groups x C/groups, transpose, flatten."""
    n, c, h, w = x.shape
    x = x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(n, c, h, w)
