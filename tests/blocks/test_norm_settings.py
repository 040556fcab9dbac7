"""Norm settings (``norm_eps``, ``norm_momentum``) reach every norm of every built-in block, one way for all.

Declared through ``nascore_plugins.common.norm_settings`` and threaded as a ``layers.Norm``; they change no shape,
parameter or MAC (checked by check_block), only the function: pretrained weights need the values they were trained
with (torchvision's MobileNetV3: eps 1e-3, momentum 0.01; GoogLeNet and Inception-v3: eps 1e-3).
"""

from __future__ import annotations

import pytest
import torch.nn as nn

from nascore.blocks.layers import NORM_EPS, NORM_MOMENTUM, ConvNormAct, Norm, make_norm
from nascore.blocks.registry import get_block
from nascore.blocks.testing import check_block

NORMS = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)

# block[/variant]: (input shapes, parameters); every built-in block that has a norm.
CASES = {
    "conv_bn_act": ([(8, 8, 8)], {"out": 16}),
    "dilated_conv": ([(8, 8, 8)], {"out": 16}),
    "depthwise_separable": ([(8, 8, 8)], {"out": 16, "se_ratio": 0.25}),
    "norm_act": ([(8, 8, 8)], {}),
    "resnet_basic": ([(8, 8, 8)], {"out": 16, "stride": 2}),
    "resnet_bottleneck": ([(8, 8, 8)], {"out": 32, "stride": 2}),
    "res2net": ([(8, 8, 8)], {"out": 64, "stride": 2}),
    "dense_block": ([(8, 8, 8)], {"layers": 2, "growth": 4}),
    "dense_transition": ([(8, 8, 8)], {}),
    "inverted_residual": ([(8, 8, 8)], {"out": 8, "se": True}),
    "mbconv": ([(8, 8, 8)], {"out": 8}),
    "fused_mbconv": ([(8, 8, 8)], {"out": 8}),
    "shufflenet_v1": ([(24, 8, 8)], {"out": 48, "stride": 2}),
    "shufflenet_v2": ([(8, 8, 8)], {"out": 16, "stride": 2}),
    "fire": ([(8, 8, 8)], {"squeeze": 4, "expand1x1": 8, "expand3x3": 8, "norm": "batch"}),
    "inception_v1": ([(8, 8, 8)], {}),
    "inception_v3_a": ([(8, 8, 8)], {}),
    "inception_v3_b": ([(8, 9, 9)], {}),
    "inception_v3_c": ([(8, 8, 8)], {"c7": 8}),
    "inception_v3_d": ([(8, 9, 9)], {}),
    "inception_v3_e": ([(8, 8, 8)], {}),
    "inception_resnet_a": ([(8, 8, 8)], {}),
    "inception_resnet_b": ([(8, 8, 8)], {}),
    "inception_resnet_c": ([(8, 8, 8)], {}),
    "inception_resnet_reduction_a": ([(8, 9, 9)], {}),
    "inception_resnet_reduction_b": ([(8, 9, 9)], {}),
    "pan": ([(8, 16, 16), (16, 8, 8)], {"out": 8}),
    "fpn_pan": ([(8, 16, 16), (16, 8, 8)], {"out": 8}),
    "bifpn": ([(8, 16, 16), (16, 8, 8)], {"out": 8, "extra_levels": 1}),
    "asff": ([(8, 16, 16), (16, 8, 8)], {"out": 8}),
    "aspp": ([(8, 8, 8)], {"out": 8, "rates": [2]}),
    "psp": ([(8, 8, 8)], {"bins": [1, 2]}),
    "deform_conv": ([(8, 8, 8)], {"out": 16}),
    "scconv": ([(8, 8, 8)], {"out": 16}),
    "strip_pool": ([(8, 8, 8)], {}),
    "nb201_cell": ([(8, 8, 8)], {"genotype": "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|"
                                             "avg_pool_3x3~1|nor_conv_3x3~2|"}),
    "nb201_reduction": ([(8, 8, 8)], {"out": 16}),
    "darts_cell": ([(8, 8, 8), (8, 8, 8)], {"out": 8}),
    "darts_cell/reduction": ([(8, 16, 16), (8, 8, 8)], {"out": 8, "reduction": True, "reduction_prev": True,
                                                        "genotype": "skip_connect:0,conv_7x1_1x7:1|"
                                                                    "dil_conv_5x5:0,sep_conv_3x3:2"}),
}


def _norms(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, NORMS)]


def _build(name: str, **params):
    spec = get_block(name.split("/")[0])
    shapes, given = CASES[name]
    resolved = spec.resolve({**given, **params})
    return spec.module(spec.in_channels(shapes), **resolved)


@pytest.mark.parametrize("name", sorted(CASES))
def test_defaults_are_pytorchs(name):
    norms = _norms(_build(name))
    assert norms, f"{name} builds no norm"
    assert all(m.eps == NORM_EPS for m in norms)
    assert all(m.momentum == NORM_MOMENTUM for m in norms if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("name", sorted(CASES))
def test_settings_reach_every_norm_and_change_no_cost(name):
    norms = _norms(_build(name, norm_eps=1e-3, norm_momentum=0.01))
    assert [m.eps for m in norms] == [1e-3] * len(norms)
    assert {m.momentum for m in norms if isinstance(m, nn.BatchNorm2d)} <= {0.01}
    shapes, given = CASES[name]
    block = get_block(name.split("/")[0])
    default = check_block(block, shapes, **given)
    changed = check_block(block, shapes, **given, norm_eps=1e-3, norm_momentum=0.01)
    assert (changed.outputs, changed.params, changed.macs) == (default.outputs, default.params, default.macs)


def test_every_block_with_settings_is_covered():
    """A built-in block that declares the settings is in CASES, so the checks above see its norms."""
    from nascore.blocks.registry import BLOCKS

    declared = {name for name, spec in BLOCKS.items() if any(p.name == "norm_eps" for p in spec.params)}
    assert declared - {name.split("/")[0] for name in CASES} == set()


@pytest.mark.parametrize("kind", ["batch", "group", "layer", "instance"])
def test_make_norm_takes_settings_for_every_kind(kind):
    norm = make_norm(Norm(kind, eps=1e-3, momentum=0.01), 8)
    assert norm.eps == 1e-3
    if kind in ("batch", "instance"):
        assert norm.momentum == 0.01
    assert type(make_norm(kind, 8)) is type(norm)


def test_conv_norm_act_takes_a_name_or_a_norm():
    assert ConvNormAct(3, 8, 3, norm=Norm("batch", 1e-3)).norm.eps == 1e-3
    assert ConvNormAct(3, 8, 3, norm="batch").norm.eps == NORM_EPS
    assert not hasattr(ConvNormAct(3, 8, 3, norm=Norm("none")), "norm")
    assert ConvNormAct(3, 8, 3, norm=Norm("none")).conv.bias is not None


def test_out_of_range_settings_are_refused_by_name():
    from nascore.errors import ParamError

    with pytest.raises(ParamError, match="norm_eps"):
        get_block("conv_bn_act").resolve({"out": 8, "norm_eps": -1.0})
    with pytest.raises(ParamError, match="norm_momentum"):
        get_block("mbconv").resolve({"out": 8, "norm_momentum": 2.0})
