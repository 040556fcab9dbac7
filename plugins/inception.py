"""Inception blocks: GoogLeNet's module, Inception-v3's A-E modules, Inception-ResNet-v2's residual and reduction cells.

Every convolution is torchvision's ``BasicConv2d`` (convolution without bias, batch norm, ReLU) with its padding
given explicitly, so parameter counts match torchvision / timm exactly. Each block declares its branches once as a
layout (lists of ``(out, kernel, stride, padding)`` convolutions) that both ``__init__`` and ``tally`` walk.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import common

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.tally import infer_with, same_spatial
from nascore.blocks.layers import ConvNormAct, DropPath, Norm

V1_PAPER = "Going Deeper with Convolutions (Szegedy et al. 2015)"
V3_PAPER = "Rethinking the Inception Architecture for Computer Vision (Szegedy et al. 2016)"
IR_PAPER = "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning (Szegedy et al. 2017)"

# -- shared pieces --------------------------------------------------------------------------------------------------


def _seq(in_channels, convs, norm):
    """A chain of BasicConv2d units (conv without bias, batch norm, ReLU) from ``(out, kernel, stride, padding)``."""
    layers = []
    for out, kernel, stride, padding in convs:
        layers.append(ConvNormAct(in_channels, out, kernel, stride, padding, norm=norm, act="relu"))
        in_channels = out
    return nn.Sequential(*layers)


def _seq_tally(t, shape, convs, norm):
    for out, kernel, stride, padding in convs:
        shape = ConvNormAct.tally(t, shape, out, kernel, stride, padding, norm=norm, act="relu")
    return shape


def _cat(shapes, what):
    h, w = same_spatial(shapes, what)
    return sum(s[0] for s in shapes), h, w


def _ch(name, default, doc):
    return Param(name, int, default, doc, low=1, high=1 << 16, channels=True)


def _batch(norm_eps, norm_momentum):
    """BasicConv2d's batch norm with the block's settings (torchvision's Inception-v1/v3 use eps 1e-3)."""
    return Norm("batch", norm_eps, norm_momentum)


def _scale(default):
    return Param("scale", float, default, "residual branch scale before the add", low=0.0, high=1.0)




# -- GoogLeNet (Inception v1) ---------------------------------------------------------------------------------------


def _v1_layout(b1, b3_reduce, b3, b5_reduce, b5, pool_proj, b5_kernel):
    return ([(b1, 1, 1, 0)],
            [(b3_reduce, 1, 1, 0), (b3, 3, 1, 1)],
            [(b5_reduce, 1, 1, 0), (b5, b5_kernel, 1, b5_kernel // 2)],
            [(pool_proj, 1, 1, 0)])


class InceptionV1(nn.Module):
    """1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 max-pool->1x1, concatenated (torchvision's googlenet.Inception)."""

    def __init__(self, in_channels, b1, b3_reduce, b3, b5_reduce, b5, pool_proj, b5_kernel, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _v1_layout(b1, b3_reduce, b3, b5_reduce, b5, pool_proj, b5_kernel)
        self.branch1 = _seq(in_channels, l1, norm)
        self.branch2 = _seq(in_channels, l2, norm)
        self.branch3 = _seq(in_channels, l3, norm)
        self.pool = nn.MaxPool2d(3, 1, 1, ceil_mode=True)
        self.branch4 = _seq(in_channels, l4, norm)

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(self.pool(x))], 1)

    @staticmethod
    def tally(t, shape, b1, b3_reduce, b3, b5_reduce, b5, pool_proj, b5_kernel, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _v1_layout(b1, b3_reduce, b3, b5_reduce, b5, pool_proj, b5_kernel)
        pooled = t.pool(shape, 3, 1, 1, ceil_mode=True)
        return _cat([_seq_tally(t, shape, l1, norm), _seq_tally(t, shape, l2, norm), _seq_tally(t, shape, l3, norm),
                     _seq_tally(t, pooled, l4, norm)], "inception_v1")


INCEPTION_V1 = BlockSpec(
    name="inception_v1", aliases=("googlenet_inception",), module=InceptionV1, infer=infer_with(InceptionV1),
    params=(_ch("b1", 64, "1x1 branch channels"), _ch("b3_reduce", 96, "1x1 reduction before the 3x3"),
            _ch("b3", 128, "3x3 branch channels"), _ch("b5_reduce", 16, "1x1 reduction before the 5x5"),
            _ch("b5", 32, "5x5 branch channels"), _ch("pool_proj", 32, "1x1 projection after the max-pool"),
            Param("b5_kernel", int, 5, "kernel of the '5x5' branch (torchvision's googlenet uses 3, a known quirk)",
                  choices=(3, 5, 7)), *common.norm_settings()),
    doc="GoogLeNet Inception module: parallel 1x1, 1x1->3x3, 1x1->5x5 and max-pool->1x1 branches, concatenated.",
    paper=V1_PAPER,
)

# -- Inception v3 ---------------------------------------------------------------------------------------------------


def _a_layout(pool_features):
    return ([(64, 1, 1, 0)],
            [(48, 1, 1, 0), (64, 5, 1, 2)],
            [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 1, 1)],
            [(pool_features, 1, 1, 0)])


class InceptionA(nn.Module):
    """35x35 module: 1x1 | 1x1->5x5 | 1x1->3x3->3x3 | 3x3 avg-pool->1x1 (torchvision's InceptionA)."""

    def __init__(self, in_channels, pool_features, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _a_layout(pool_features)
        self.branch1x1 = _seq(in_channels, l1, norm)
        self.branch5x5 = _seq(in_channels, l2, norm)
        self.branch3x3dbl = _seq(in_channels, l3, norm)
        self.branch_pool = _seq(in_channels, l4, norm)

    def forward(self, x):
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch5x5(x), self.branch3x3dbl(x), self.branch_pool(pooled)], 1)

    @staticmethod
    def tally(t, shape, pool_features, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _a_layout(pool_features)
        pooled = t.pool(shape, 3, 1, 1)
        return _cat([_seq_tally(t, shape, l1, norm), _seq_tally(t, shape, l2, norm), _seq_tally(t, shape, l3, norm),
                     _seq_tally(t, pooled, l4, norm)], "inception_v3_a")


_B_LAYOUT = ([(384, 3, 2, 0)],
             [(64, 1, 1, 0), (96, 3, 1, 1), (96, 3, 2, 0)])


class InceptionB(nn.Module):
    """Grid reduction 35->17: 3x3/2 | 1x1->3x3->3x3/2 | 3x3/2 max-pool (torchvision's InceptionB)."""

    def __init__(self, in_channels, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        self.branch3x3 = _seq(in_channels, _B_LAYOUT[0], norm)
        self.branch3x3dbl = _seq(in_channels, _B_LAYOUT[1], norm)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl(x), F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    @staticmethod
    def tally(t, shape, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        pooled = t.pool(shape, 3, 2)
        return _cat([_seq_tally(t, shape, _B_LAYOUT[0], norm), _seq_tally(t, shape, _B_LAYOUT[1], norm), pooled],
                    "inception_v3_b")


def _c_layout(c7):
    return ([(192, 1, 1, 0)],
            [(c7, 1, 1, 0), (c7, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0))],
            [(c7, 1, 1, 0), (c7, (7, 1), 1, (3, 0)), (c7, (1, 7), 1, (0, 3)), (c7, (7, 1), 1, (3, 0)),
             (192, (1, 7), 1, (0, 3))],
            [(192, 1, 1, 0)])


class InceptionC(nn.Module):
    """17x17 module with 7x7 convolutions factorised into 1x7 and 7x1 (torchvision's InceptionC)."""

    def __init__(self, in_channels, c7, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _c_layout(c7)
        self.branch1x1 = _seq(in_channels, l1, norm)
        self.branch7x7 = _seq(in_channels, l2, norm)
        self.branch7x7dbl = _seq(in_channels, l3, norm)
        self.branch_pool = _seq(in_channels, l4, norm)

    def forward(self, x):
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch7x7(x), self.branch7x7dbl(x), self.branch_pool(pooled)], 1)

    @staticmethod
    def tally(t, shape, c7, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        l1, l2, l3, l4 = _c_layout(c7)
        pooled = t.pool(shape, 3, 1, 1)
        return _cat([_seq_tally(t, shape, l1, norm), _seq_tally(t, shape, l2, norm), _seq_tally(t, shape, l3, norm),
                     _seq_tally(t, pooled, l4, norm)], "inception_v3_c")


_D_LAYOUT = ([(192, 1, 1, 0), (320, 3, 2, 0)],
             [(192, 1, 1, 0), (192, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0)), (192, 3, 2, 0)])


class InceptionD(nn.Module):
    """Grid reduction 17->8: 1x1->3x3/2 | 1x1->1x7->7x1->3x3/2 | 3x3/2 max-pool (torchvision's InceptionD)."""

    def __init__(self, in_channels, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        self.branch3x3 = _seq(in_channels, _D_LAYOUT[0], norm)
        self.branch7x7x3 = _seq(in_channels, _D_LAYOUT[1], norm)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch7x7x3(x), F.max_pool2d(x, kernel_size=3, stride=2)], 1)

    @staticmethod
    def tally(t, shape, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        pooled = t.pool(shape, 3, 2)
        return _cat([_seq_tally(t, shape, _D_LAYOUT[0], norm), _seq_tally(t, shape, _D_LAYOUT[1], norm), pooled],
                    "inception_v3_d")


# Inception E: a stem per branch, then parallel 1x3 and 3x1 convolutions whose outputs are concatenated.
_E_STEM = ([(320, 1, 1, 0)], [(384, 1, 1, 0)], [(448, 1, 1, 0), (384, 3, 1, 1)], [(192, 1, 1, 0)])
_E_SPLIT_A = [(384, (1, 3), 1, (0, 1))]
_E_SPLIT_B = [(384, (3, 1), 1, (1, 0))]


class InceptionE(nn.Module):
    """8x8 module with expanded filter banks: 1x3 and 3x1 outputs side by side (torchvision's InceptionE)."""

    def __init__(self, in_channels, norm_eps, norm_momentum):
        super().__init__()
        norm = _batch(norm_eps, norm_momentum)
        self.branch1x1 = _seq(in_channels, _E_STEM[0], norm)
        self.branch3x3_1 = _seq(in_channels, _E_STEM[1], norm)
        self.branch3x3_2a = _seq(384, _E_SPLIT_A, norm)
        self.branch3x3_2b = _seq(384, _E_SPLIT_B, norm)
        self.branch3x3dbl_1 = _seq(in_channels, _E_STEM[2], norm)
        self.branch3x3dbl_3a = _seq(384, _E_SPLIT_A, norm)
        self.branch3x3dbl_3b = _seq(384, _E_SPLIT_B, norm)
        self.branch_pool = _seq(in_channels, _E_STEM[3], norm)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3dbl = self.branch3x3dbl_1(x)
        pooled = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(b3dbl), self.branch3x3dbl_3b(b3dbl), self.branch_pool(pooled)], 1)

    @staticmethod
    def tally(t, shape, norm_eps, norm_momentum):
        norm = _batch(norm_eps, norm_momentum)
        b1 = _seq_tally(t, shape, _E_STEM[0], norm)
        b3 = _seq_tally(t, shape, _E_STEM[1], norm)
        b3dbl = _seq_tally(t, shape, _E_STEM[2], norm)
        pooled = t.pool(shape, 3, 1, 1)
        return _cat([b1, _seq_tally(t, b3, _E_SPLIT_A, norm), _seq_tally(t, b3, _E_SPLIT_B, norm),
                     _seq_tally(t, b3dbl, _E_SPLIT_A, norm), _seq_tally(t, b3dbl, _E_SPLIT_B, norm),
                     _seq_tally(t, pooled, _E_STEM[3], norm)], "inception_v3_e")


INCEPTION_V3_A = BlockSpec(
    name="inception_v3_a", module=InceptionA, infer=infer_with(InceptionA),
    params=(_ch("pool_features", 32, "1x1 channels after the average pool"), *common.norm_settings()),
    doc="Inception-v3 35x35 module: 1x1, 1x1->5x5, 1x1->3x3->3x3 and avg-pool->1x1 branches (224 + pool_features).",
    paper=V3_PAPER,
)
INCEPTION_V3_B = BlockSpec(
    name="inception_v3_b", module=InceptionB, infer=infer_with(InceptionB), params=common.norm_settings(),
    doc="Inception-v3 grid reduction (35->17): 3x3/2, 1x1->3x3->3x3/2 and max-pool branches (480 + input channels).",
    paper=V3_PAPER,
)
INCEPTION_V3_C = BlockSpec(
    name="inception_v3_c", module=InceptionC, infer=infer_with(InceptionC),
    params=(_ch("c7", 128, "inner channels of the factorised 7x7 branches"), *common.norm_settings()),
    doc="Inception-v3 17x17 module: 7x7 convolutions factorised into 1x7 and 7x1 (768 output channels).",
    paper=V3_PAPER,
)
INCEPTION_V3_D = BlockSpec(
    name="inception_v3_d", module=InceptionD, infer=infer_with(InceptionD), params=common.norm_settings(),
    doc="Inception-v3 grid reduction (17->8): 1x1->3x3/2, 1x1->1x7->7x1->3x3/2 and max-pool branches.",
    paper=V3_PAPER,
)
INCEPTION_V3_E = BlockSpec(
    name="inception_v3_e", module=InceptionE, infer=infer_with(InceptionE), params=common.norm_settings(),
    doc="Inception-v3 8x8 module with expanded filter banks: parallel 1x3 and 3x1 outputs (2048 output channels).",
    paper=V3_PAPER,
)

# -- Inception-ResNet-v2 --------------------------------------------------------------------------------------------


class _ResidualInception(nn.Module):
    """Branches, concat, 1x1 up-projection (with bias) back to the input channels, scaled residual add, ReLU."""

    def __init__(self, in_channels, layouts, scale, drop_path, relu, norm):
        super().__init__()
        self.branches = nn.ModuleList([_seq(in_channels, layout, norm) for layout in layouts])
        self.up = nn.Conv2d(sum(layout[-1][0] for layout in layouts), in_channels, 1, bias=True)
        self.scale = float(scale)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        outs = []
        for branch in self.branches:
            outs.append(branch(x))
        out = self.up(torch.cat(outs, 1)) * self.scale
        return self.act(x + self.drop_path(out))

    @staticmethod
    def tally_layouts(t, shape, layouts, what, norm):
        cat = _cat([_seq_tally(t, shape, layout, norm) for layout in layouts], what)
        return t.conv(cat, shape[0], 1, padding=0, bias=True)


def _block35_layouts(b1, b3_reduce, b3, b3dbl_reduce, b3dbl_mid, b3dbl):
    return ([(b1, 1, 1, 0)],
            [(b3_reduce, 1, 1, 0), (b3, 3, 1, 1)],
            [(b3dbl_reduce, 1, 1, 0), (b3dbl_mid, 3, 1, 1), (b3dbl, 3, 1, 1)])


class Block35(_ResidualInception):
    """Inception-ResNet-A (35x35): 1x1 | 1x1->3x3 | 1x1->3x3->3x3, up-projected and added (timm's Block35)."""

    def __init__(self, in_channels, b1, b3_reduce, b3, b3dbl_reduce, b3dbl_mid, b3dbl, scale, drop_path, norm_eps,
                 norm_momentum):
        super().__init__(in_channels, _block35_layouts(b1, b3_reduce, b3, b3dbl_reduce, b3dbl_mid, b3dbl), scale,
                         drop_path, relu=True, norm=_batch(norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, b1, b3_reduce, b3, b3dbl_reduce, b3dbl_mid, b3dbl, scale, drop_path, norm_eps, norm_momentum):
        return _ResidualInception.tally_layouts(
            t, shape, _block35_layouts(b1, b3_reduce, b3, b3dbl_reduce, b3dbl_mid, b3dbl), "inception_resnet_a",
            _batch(norm_eps, norm_momentum))


def _block17_layouts(b1, b7_reduce, b7_mid, b7):
    return ([(b1, 1, 1, 0)],
            [(b7_reduce, 1, 1, 0), (b7_mid, (1, 7), 1, (0, 3)), (b7, (7, 1), 1, (3, 0))])


class Block17(_ResidualInception):
    """Inception-ResNet-B (17x17): 1x1 | 1x1->1x7->7x1, up-projected and added (timm's Block17)."""

    def __init__(self, in_channels, b1, b7_reduce, b7_mid, b7, scale, drop_path, norm_eps, norm_momentum):
        super().__init__(in_channels, _block17_layouts(b1, b7_reduce, b7_mid, b7), scale, drop_path, relu=True,
                         norm=_batch(norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, b1, b7_reduce, b7_mid, b7, scale, drop_path, norm_eps, norm_momentum):
        return _ResidualInception.tally_layouts(t, shape, _block17_layouts(b1, b7_reduce, b7_mid, b7),
                                                "inception_resnet_b", _batch(norm_eps, norm_momentum))


def _block8_layouts(b1, b3_reduce, b3_mid, b3):
    return ([(b1, 1, 1, 0)],
            [(b3_reduce, 1, 1, 0), (b3_mid, (1, 3), 1, (0, 1)), (b3, (3, 1), 1, (1, 0))])


class Block8(_ResidualInception):
    """Inception-ResNet-C (8x8): 1x1 | 1x1->1x3->3x1, up-projected and added (timm's Block8)."""

    def __init__(self, in_channels, b1, b3_reduce, b3_mid, b3, scale, drop_path, no_relu, norm_eps, norm_momentum):
        super().__init__(in_channels, _block8_layouts(b1, b3_reduce, b3_mid, b3), scale, drop_path,
                         relu=not no_relu, norm=_batch(norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, b1, b3_reduce, b3_mid, b3, scale, drop_path, no_relu, norm_eps, norm_momentum):
        return _ResidualInception.tally_layouts(t, shape, _block8_layouts(b1, b3_reduce, b3_mid, b3),
                                                "inception_resnet_c", _batch(norm_eps, norm_momentum))


class _Reduction(nn.Module):
    """Conv branches plus a 3x3/2 max-pool branch, concatenated (timm's Mixed_6a / Mixed_7a)."""

    def __init__(self, in_channels, layouts, norm):
        super().__init__()
        self.branches = nn.ModuleList([_seq(in_channels, layout, norm) for layout in layouts])

    def forward(self, x):
        outs = []
        for branch in self.branches:
            outs.append(branch(x))
        outs.append(F.max_pool2d(x, kernel_size=3, stride=2))
        return torch.cat(outs, 1)

    @staticmethod
    def tally_layouts(t, shape, layouts, what, norm):
        pooled = t.pool(shape, 3, 2)
        return _cat([_seq_tally(t, shape, layout, norm) for layout in layouts] + [pooled], what)


def _reduction_a_layouts(b3, b3dbl_reduce, b3dbl_mid, b3dbl):
    return ([(b3, 3, 2, 0)],
            [(b3dbl_reduce, 1, 1, 0), (b3dbl_mid, 3, 1, 1), (b3dbl, 3, 2, 0)])


class ReductionA(_Reduction):
    """35->17: 3x3/2 | 1x1->3x3->3x3/2 | 3x3/2 max-pool (timm's Mixed_6a; the paper's k, l, m, n)."""

    def __init__(self, in_channels, b3, b3dbl_reduce, b3dbl_mid, b3dbl, norm_eps, norm_momentum):
        super().__init__(in_channels, _reduction_a_layouts(b3, b3dbl_reduce, b3dbl_mid, b3dbl),
                         _batch(norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, b3, b3dbl_reduce, b3dbl_mid, b3dbl, norm_eps, norm_momentum):
        return _Reduction.tally_layouts(t, shape, _reduction_a_layouts(b3, b3dbl_reduce, b3dbl_mid, b3dbl),
                                        "inception_resnet_reduction_a", _batch(norm_eps, norm_momentum))


def _reduction_b_layouts(b3a_reduce, b3a, b3b_reduce, b3b, b3dbl_reduce, b3dbl_mid, b3dbl):
    return ([(b3a_reduce, 1, 1, 0), (b3a, 3, 2, 0)],
            [(b3b_reduce, 1, 1, 0), (b3b, 3, 2, 0)],
            [(b3dbl_reduce, 1, 1, 0), (b3dbl_mid, 3, 1, 1), (b3dbl, 3, 2, 0)])


class ReductionB(_Reduction):
    """17->8: 1x1->3x3/2 | 1x1->3x3/2 | 1x1->3x3->3x3/2 | 3x3/2 max-pool (timm's Mixed_7a)."""

    def __init__(self, in_channels, b3a_reduce, b3a, b3b_reduce, b3b, b3dbl_reduce, b3dbl_mid, b3dbl, norm_eps,
                 norm_momentum):
        super().__init__(in_channels, _reduction_b_layouts(b3a_reduce, b3a, b3b_reduce, b3b, b3dbl_reduce,
                                                           b3dbl_mid, b3dbl), _batch(norm_eps, norm_momentum))

    @staticmethod
    def tally(t, shape, b3a_reduce, b3a, b3b_reduce, b3b, b3dbl_reduce, b3dbl_mid, b3dbl, norm_eps, norm_momentum):
        return _Reduction.tally_layouts(
            t, shape, _reduction_b_layouts(b3a_reduce, b3a, b3b_reduce, b3b, b3dbl_reduce, b3dbl_mid, b3dbl),
            "inception_resnet_reduction_b", _batch(norm_eps, norm_momentum))


INCEPTION_RESNET_A = BlockSpec(
    name="inception_resnet_a", aliases=("block35",), module=Block35, infer=infer_with(Block35),
    params=(_ch("b1", 32, "1x1 branch channels"), _ch("b3_reduce", 32, "1x1 reduction before the 3x3"),
            _ch("b3", 32, "3x3 branch channels"), _ch("b3dbl_reduce", 32, "1x1 reduction before the double 3x3"),
            _ch("b3dbl_mid", 48, "first 3x3 of the double-3x3 branch"),
            _ch("b3dbl", 64, "second 3x3 of the double-3x3 branch"), _scale(0.17), common.drop_path(),
            *common.norm_settings()),
    doc="Inception-ResNet-A: three inception branches, 1x1 up-projection, scaled residual add, ReLU.",
    paper=IR_PAPER,
)
INCEPTION_RESNET_B = BlockSpec(
    name="inception_resnet_b", aliases=("block17",), module=Block17, infer=infer_with(Block17),
    params=(_ch("b1", 192, "1x1 branch channels"), _ch("b7_reduce", 128, "1x1 reduction before the 1x7"),
            _ch("b7_mid", 160, "1x7 convolution channels"), _ch("b7", 192, "7x1 convolution channels"),
            _scale(0.10), common.drop_path(), *common.norm_settings()),
    doc="Inception-ResNet-B: 1x1 and factorised 1x7->7x1 branches, 1x1 up-projection, scaled residual add, ReLU.",
    paper=IR_PAPER,
)
INCEPTION_RESNET_C = BlockSpec(
    name="inception_resnet_c", aliases=("block8",), module=Block8, infer=infer_with(Block8),
    params=(_ch("b1", 192, "1x1 branch channels"), _ch("b3_reduce", 192, "1x1 reduction before the 1x3"),
            _ch("b3_mid", 224, "1x3 convolution channels"), _ch("b3", 256, "3x1 convolution channels"),
            _scale(0.20), common.drop_path(),
            Param("no_relu", bool, False, "skip the ReLU after the add (the network's last block)"),
            *common.norm_settings()),
    doc="Inception-ResNet-C: 1x1 and factorised 1x3->3x1 branches, 1x1 up-projection, scaled residual add, ReLU.",
    paper=IR_PAPER,
)
INCEPTION_RESNET_REDUCTION_A = BlockSpec(
    name="inception_resnet_reduction_a", module=ReductionA, infer=infer_with(ReductionA),
    params=(_ch("b3", 384, "3x3/2 branch channels (n)"), _ch("b3dbl_reduce", 256, "1x1 reduction (k)"),
            _ch("b3dbl_mid", 256, "3x3 convolution channels (l)"), _ch("b3dbl", 384, "final 3x3/2 channels (m)"),
            *common.norm_settings()),
    doc="Inception-ResNet reduction A (35->17): 3x3/2, 1x1->3x3->3x3/2 and max-pool branches, concatenated.",
    paper=IR_PAPER,
)
INCEPTION_RESNET_REDUCTION_B = BlockSpec(
    name="inception_resnet_reduction_b", module=ReductionB, infer=infer_with(ReductionB),
    params=(_ch("b3a_reduce", 256, "1x1 reduction of the first 3x3/2 branch"),
            _ch("b3a", 384, "first 3x3/2 branch channels"),
            _ch("b3b_reduce", 256, "1x1 reduction of the second 3x3/2 branch"),
            _ch("b3b", 288, "second 3x3/2 branch channels"),
            _ch("b3dbl_reduce", 256, "1x1 reduction of the double-3x3 branch"),
            _ch("b3dbl_mid", 288, "first 3x3 of the double-3x3 branch"),
            _ch("b3dbl", 320, "final 3x3/2 of the double-3x3 branch"),
            *common.norm_settings()),
    doc="Inception-ResNet reduction B (17->8): two 1x1->3x3/2, a 1x1->3x3->3x3/2 and a max-pool branch.",
    paper=IR_PAPER,
)


@hookimpl
def nascore_blocks():
    return [INCEPTION_V1, INCEPTION_V3_A, INCEPTION_V3_B, INCEPTION_V3_C, INCEPTION_V3_D, INCEPTION_V3_E,
            INCEPTION_RESNET_A, INCEPTION_RESNET_B, INCEPTION_RESNET_C, INCEPTION_RESNET_REDUCTION_A,
            INCEPTION_RESNET_REDUCTION_B]
