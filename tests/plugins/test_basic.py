"""Basic blocks: each prediction equals the built module (shapes, params, MACs), and known parameter counts."""

from __future__ import annotations

import pytest

from nascore.blocks.registry import get_block
from nascore.errors import ShapeError
from nascore.blocks.testing import check_block

CASES = [
    ("conv_bn_act", [(3, 32, 32)], dict(out=16, stride=2), 3 * 16 * 9 + 32),
    ("conv_bn_act", [(8, 32, 32)], dict(out=16, kernel=[1, 7], groups=2, norm="group", act="prelu"),
     16 * 4 * 7 + 32 + 1),
    ("conv_bn_act", [(8, 32, 32)], dict(out=16, norm="none"), 8 * 16 * 9 + 16),
    ("conv_bn_act", [(8, 32, 32)], dict(out=16, norm="layer", act="hard_swish"), 8 * 16 * 9 + 32),
    ("conv_bn_act", [(8, 32, 32)], dict(out=16, norm="instance", act="mish"), 8 * 16 * 9 + 32),
    ("dilated_conv", [(64, 17, 17)], dict(out=32, rate=4), 64 * 32 * 9 + 64),
    ("depthwise_separable", [(8, 32, 32)], dict(out=16, se_ratio=0.25), 8 * 9 + 16 + (8 * 2 + 2 + 2 * 8 + 8)
     + 8 * 16 + 32),
    ("norm_act", [(64, 17, 17)], {}, 128),
    ("max_pool", [(64, 55, 55)], dict(stride=2, ceil_mode=True), 0),
    ("avg_pool", [(64, 8, 8)], dict(kernel=2), 0),
    ("global_avg_pool", [(64, 7, 7)], {}, 0),
    ("flatten", [(4, 2, 2)], {}, 0),
    ("dropout", [(10,)], dict(p=0.2), 0),
    ("linear", [(64,)], dict(out=10), 650),
    ("identity", [(4, 2, 2)], {}, 0),
    ("add", [(8, 4, 4), (8, 4, 4), (8, 4, 4)], {}, 0),
    ("multiply", [(64, 7, 7), (64, 1, 1)], {}, 0),
    ("concat", [(64, 7, 7), (32, 7, 7)], {}, 0),
    ("channel_shuffle", [(64, 7, 7)], dict(groups=4), 0),
    ("upsample", [(64, 7, 7)], {}, 0),
    ("upsample", [(64, 7, 7), (64, 14, 14)], dict(mode="bilinear"), 0),
    ("se", [(256, 8, 8)], {}, 256 * 16 + 16 + 16 * 256 + 256),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params


def test_output_shapes():
    assert check_block(get_block("conv"), [(3, 224, 224)], out=64, kernel=7, stride=2).outputs["out"] == (64, 112, 112)
    assert check_block(get_block("max_pool"), [(64, 112, 112)], kernel=3, stride=2, padding=1).outputs["out"] == \
        (64, 56, 56)
    assert check_block(get_block("max_pool"), [(64, 111, 111)], stride=2, ceil_mode=True).outputs["out"] == (64, 55, 55)
    assert check_block(get_block("concat"), [(64, 7, 7), (32, 7, 7)]).outputs["out"] == (96, 7, 7)
    assert check_block(get_block("global_avg_pool"), [(64, 7, 7)]).outputs["out"] == (64,)


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("add", [(8, 4, 4), (16, 4, 4)], {}, "8x4x4"),
    ("concat", [(8, 4, 4), (8, 2, 2)], {}, "8x2x2"),
    ("multiply", [(8, 4, 4), (3, 4, 4)], {}, "broadcast"),
    ("conv_bn_act", [(6, 8, 8)], dict(out=8, groups=4), "groups=4"),
    ("conv_bn_act", [(3, 2, 2)], dict(out=8, kernel=5, padding=0), "does not fit"),
    ("linear", [(8, 4, 4)], dict(out=8), "flatten"),
    ("channel_shuffle", [(6, 4, 4)], dict(groups=4), "divisible"),
])
def test_shape_errors_name_the_shapes(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment):
        spec.infer(in_shapes, **spec.resolve(params))
