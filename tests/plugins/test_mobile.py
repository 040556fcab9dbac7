"""Mobile blocks: each prediction equals the built module (shapes, params, MACs), known parameter counts (hand-computed
from torchvision's layouts), TorchScript, shape errors, and the zoo graphs against the reference totals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import nascore
from nascore.blocks.registry import get_block
from nascore.errors import ShapeError
from nascore.blocks.testing import check_block

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def bn(c):
    return 2 * c


def se(c, rd):
    return c * rd + rd + rd * c + c


CASES = [
    # MobileNetV2 block: expand 16 -> 96, dw 3x3, project 96 -> 16, residual
    ("inverted_residual", [(16, 32, 32)], dict(out=16), 16 * 96 + bn(96) + 96 * 9 + bn(96) + 96 * 16 + bn(16)),
    # MobileNetV2 stage 1: expand 1 -> no expand conv
    ("inverted_residual", [(32, 32, 32)], dict(out=16, expand=1), 32 * 9 + bn(32) + 32 * 16 + bn(16)),
    # MobileNetV3: mid given, SE squeeze make_divisible(72 // 4 = 18, 8) = 24 (16 is below 90% of 18)
    ("inverted_residual", [(16, 32, 32)], dict(out=24, stride=2, mid=72, se=True, act="hard_swish"),
     16 * 72 + bn(72) + 72 * 9 + bn(72) + se(72, 24) + 72 * 24 + bn(24)),
    # MobileNetV3's first block: mid == in -> no expand conv
    ("inverted_residual", [(16, 32, 32)], dict(out=16, mid=16, act="relu"), 16 * 9 + bn(16) + 16 * 16 + bn(16)),
    # fractional expand, 5x5 kernel, drop path: 24 * 4.5 = 108
    ("inverted_residual", [(24, 15, 15)], dict(out=24, kernel=5, expand=4.5, drop_path=0.1),
     24 * 108 + bn(108) + 108 * 25 + bn(108) + 108 * 24 + bn(24)),
    # EfficientNet-B0 stage 1: expand 1, SE squeeze 32 // 4 = 8 of the input
    ("mbconv", [(32, 32, 32)], dict(out=16, expand=1), 32 * 9 + bn(32) + se(32, 8) + 32 * 16 + bn(16)),
    ("mbconv", [(16, 32, 32)], dict(out=16, kernel=5, drop_path=0.2),
     16 * 96 + bn(96) + 96 * 25 + bn(96) + se(96, 4) + 96 * 16 + bn(16)),
    ("mbconv", [(24, 16, 16)], dict(out=40, kernel=5, stride=2, se_ratio=0.0),
     24 * 144 + bn(144) + 144 * 25 + bn(144) + 144 * 40 + bn(40)),
    # input not a multiple of 8: make_divisible(12, 8) = 16 != 12 -> an expand conv even at expand 1 (torchvision)
    ("mbconv", [(12, 8, 8)], dict(out=12, expand=1), 12 * 16 + bn(16) + 16 * 9 + bn(16) + se(16, 3) + 16 * 12 + bn(12)),
    # Fused-MBConv without expansion: one 3x3 conv-BN-SiLU
    ("fused_mbconv", [(24, 32, 32)], dict(out=24, expand=1), 24 * 24 * 9 + bn(24)),
    ("fused_mbconv", [(24, 32, 32)], dict(out=48, stride=2), 24 * 96 * 9 + bn(96) + 96 * 48 + bn(48)),
    ("fused_mbconv", [(24, 32, 32)], dict(out=48, stride=2, se_ratio=0.25),
     24 * 96 * 9 + bn(96) + se(96, 6) + 96 * 48 + bn(48)),
    ("fused_mbconv", [(48, 16, 16)], dict(out=48, drop_path=0.1), 48 * 192 * 9 + bn(192) + 192 * 48 + bn(48)),
    # ShuffleNet v1 (g=3) first unit: ungrouped first 1x1, bottleneck 240 / 4 = 60, branch 240 - 24 = 216
    ("shufflenet_v1", [(24, 56, 56)], dict(out=240, stride=2, first_group=True),
     24 * 60 + bn(60) + 60 * 9 + bn(60) + 20 * 216 + bn(216)),
    ("shufflenet_v1", [(240, 28, 28)], dict(out=240), 80 * 60 + bn(60) + 60 * 9 + bn(60) + 20 * 240 + bn(240)),
    ("shufflenet_v1", [(240, 28, 28)], dict(out=480, stride=2, groups=8),
     30 * 120 + bn(120) + 120 * 9 + bn(120) + 15 * 240 + bn(240)),
    # ShuffleNet v2 (torchvision x1.0 stage 2)
    ("shufflenet_v2", [(24, 56, 56)], dict(out=116, stride=2),
     24 * 9 + bn(24) + 24 * 58 + bn(58) + 24 * 58 + bn(58) + 58 * 9 + bn(58) + 58 * 58 + bn(58)),
    ("shufflenet_v2", [(116, 28, 28)], dict(out=116), 58 * 58 + bn(58) + 58 * 9 + bn(58) + 58 * 58 + bn(58)),
    ("shufflenet_v2", [(116, 28, 28)], dict(out=116, kernel=5), 58 * 58 + bn(58) + 58 * 25 + bn(58) + 58 * 58 + bn(58)),
    # SqueezeNet Fire: convolutions with bias, no norm
    ("fire", [(64, 55, 55)], dict(squeeze=16, expand1x1=64, expand3x3=64),
     64 * 16 + 16 + 16 * 64 + 64 + 16 * 64 * 9 + 64),
    ("fire", [(512, 13, 13)], dict(squeeze=64, expand1x1=256, expand3x3=256, norm="batch"),
     512 * 64 + bn(64) + 64 * 256 + bn(256) + 64 * 256 * 9 + bn(256)),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params


def test_output_shapes():
    assert check_block(get_block("inverted_residual"), [(16, 56, 56)], out=24, stride=2).outputs["out"] == (24, 28, 28)
    assert check_block(get_block("mbconv"), [(40, 28, 28)], out=80, stride=2).outputs["out"] == (80, 14, 14)
    assert check_block(get_block("fused_mbconv"), [(24, 64, 64)], out=48, stride=2).outputs["out"] == (48, 32, 32)
    assert check_block(get_block("shufflenet_v1"), [(240, 28, 28)], out=480, stride=2).outputs["out"] == (480, 14, 14)
    assert check_block(get_block("shufflenet_v2"), [(116, 28, 28)], out=232, stride=2).outputs["out"] == (232, 14, 14)
    assert check_block(get_block("fire"), [(128, 27, 27)], squeeze=32, expand1x1=128,
                       expand3x3=128).outputs["out"] == (256, 27, 27)


SCRIPT_CASES = [
    ("inverted_residual", (16, 16, 16), dict(out=16, mid=48, se=True, act="hard_swish", drop_path=0.1)),
    ("mbconv", (16, 16, 16), dict(out=16, kernel=5, drop_path=0.1)),
    ("fused_mbconv", (24, 16, 16), dict(out=24, se_ratio=0.25, drop_path=0.1)),
    ("shufflenet_v1", (24, 16, 16), dict(out=240, stride=2, first_group=True)),
    ("shufflenet_v1", (240, 8, 8), dict(out=240, drop_path=0.1)),
    ("shufflenet_v2", (24, 16, 16), dict(out=48, stride=2)),
    ("shufflenet_v2", (48, 8, 8), dict(out=48)),
    ("fire", (64, 16, 16), dict(squeeze=16, expand1x1=64, expand3x3=64)),
]


@pytest.mark.parametrize("name, shape, params", SCRIPT_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(SCRIPT_CASES)])
def test_torchscript_matches_eager(name, shape, params):
    spec = get_block(name)
    module = spec.module(shape[0], **spec.resolve(params)).eval()
    scripted = torch.jit.script(module)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(module(x), scripted(x), atol=1e-6)
    module.train()(x).sum().backward()  # drop path active in training


def test_residual_only_when_shapes_allow():
    ir = get_block("inverted_residual")
    assert ir.module(16, **ir.resolve(dict(out=16))).use_res
    assert not ir.module(16, **ir.resolve(dict(out=16, stride=2))).use_res
    assert not ir.module(16, **ir.resolve(dict(out=24))).use_res
    mb = get_block("mbconv")
    module = mb.module(16, **mb.resolve(dict(out=16, drop_path=0.3)))
    assert module.use_res and module.drop_path.drop_prob == pytest.approx(0.3)


def test_shufflenet_v2_stride1_keeps_the_first_half():
    spec = get_block("shufflenet_v2")
    module = spec.module(8, **spec.resolve(dict(out=8))).eval()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        y = module(x)
    assert torch.equal(y[:, 0::2], x[:, :4])  # concat then shuffle(2): the identity half lands on even channels


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("shufflenet_v1", [(24, 8, 8)], dict(out=240), "out must equal"),
    ("shufflenet_v1", [(240, 8, 8)], dict(out=240, stride=2), "must exceed"),
    ("shufflenet_v1", [(24, 8, 8)], dict(out=240, stride=2, groups=5), "groups=5"),
    ("shufflenet_v1", [(240, 8, 8)], dict(out=240, mid_ratio=0.21), "bottleneck \\(50\\)"),
    ("shufflenet_v2", [(24, 8, 8)], dict(out=117, stride=2), "even"),
    ("shufflenet_v2", [(24, 8, 8)], dict(out=48), "out must equal"),
])
def test_shape_errors_name_the_shapes(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment):
        spec.infer(in_shapes, **spec.resolve(params))
    with pytest.raises(ShapeError, match=fragment):
        spec.module(in_shapes[0][0], **spec.resolve(params))


# -- zoo --------------------------------------------------------------------------------------------------------------

ZOO = {  # /work/shared/REFERENCE.md: torchvision parameter counts, fvcore GMACs
    "mobilenet_v2": (3_504_872, 0.314),
    "mobilenet_v3_large": (5_483_032, 0.226),
    "efficientnet_b0": (5_288_548, 0.402),
    "shufflenet_v2_x1_0": (2_278_604, 0.149),
    "squeezenet1_1": (1_235_496, 0.349),
}


@pytest.mark.parametrize("model", list(ZOO))
def test_zoo_matches_reference(model):
    params, gmacs = ZOO[model]
    analysis = nascore.Graph.load(GRAPHS / f"{model}.yaml").analyse()
    assert analysis.params == params
    assert analysis.macs == pytest.approx(gmacs * 1e9, rel=0.02)


# torchvision efficientnet_b1..b7 num_params (EfficientNet_B*_Weights meta), with (width, depth, resolution)
EFFICIENTNETS = [
    ((1.0, 1.1, 240), 7_794_184),
    ((1.1, 1.2, 260), 9_109_994),
    ((1.2, 1.4, 300), 12_233_232),
    ((1.4, 1.8, 380), 19_341_616),
    ((1.6, 2.2, 456), 30_389_784),
    ((1.8, 2.6, 528), 43_040_704),
    ((2.0, 3.1, 600), 66_347_960),
]


@pytest.mark.parametrize("coefficients, params", EFFICIENTNETS, ids=[f"b{i + 1}" for i in range(len(EFFICIENTNETS))])
def test_efficientnet_b0_scales_to_torchvision(coefficients, params):
    width, depth, resolution = coefficients
    graph = nascore.Graph.load(GRAPHS / "efficientnet_b0.yaml").scale(width, depth, resolution)
    assert graph.analyse().params == params
