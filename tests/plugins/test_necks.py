"""Neck blocks: each prediction equals the built module (shapes, params, MACs), and known parameter counts."""

from __future__ import annotations

import pytest
import torch

from nascore.blocks.registry import get_block
from nascore.errors import ShapeError
from nascore.blocks.testing import check_block

PYRAMID4 = [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]
PYRAMID3 = [(128, 28, 28), (256, 14, 14), (512, 7, 7)]

CASES = [
    # torchvision.ops.FeaturePyramidNetwork(in_channels_list, 256), figures of REFERENCE.md
    ("fpn", PYRAMID4, {}, 2_607_104),
    ("fpn", PYRAMID3, dict(out=256), 2_000_384),
    # odd sizes: nearest upsampling to the lateral's size, not by 2
    ("fpn", [(16, 27, 27), (32, 14, 14)], dict(out=8), (16 + 32) * 8 + 2 * 8 + 2 * (8 * 8 * 9 + 8)),
    ("fpn", [(32, 8, 8)], dict(out=16), 32 * 16 + 16 + 16 * 16 * 9 + 16),
    # n0 conv, then per further level a stride-2 conv and a fusing conv, each 128*128*9 + BN 256
    ("pan", [(128, 28, 28), (128, 14, 14), (128, 7, 7)], dict(out=128), 5 * (128 * 128 * 9 + 256)),
    ("pan", [(64, 27, 27), (128, 14, 14), (256, 7, 7)], dict(out=32, norm="group", act="prelu"),
     (64 * 32 * 9 + 64 + 1) + (32 * 128 * 9 + 256 + 1) + (128 * 32 * 9 + 64 + 1)
     + (32 * 256 * 9 + 512 + 1) + (256 * 32 * 9 + 64 + 1)),
    ("pan", [(16, 8, 8)], dict(out=16), 16 * 16 * 9 + 32),
    # torchvision's DeepLabHead ASPP(2048, [12, 24, 36]): 1x1, three 3x3, pooling 1x1, projection 1280 -> 256
    ("aspp", [(2048, 33, 33)], {}, 2 * (2048 * 256 + 512) + 3 * (2048 * 256 * 9 + 512) + 1280 * 256 + 512),
    ("aspp", [(320, 17, 17)], dict(out=128, rates=[6, 12, 18], dropout=0.1), 1_271_296),
    ("aspp", [(64, 9, 9)], dict(out=32, rates=[2]), 2 * (64 * 32 + 64) + 64 * 32 * 9 + 64 + 3 * 32 * 32 + 64),
    # PSPNet on a ResNet's 2048-channel C5: four branches of 2048 -> 512 plus BN
    ("psp", [(2048, 60, 60)], {}, 4 * (2048 * 512 + 1024)),
    ("psp", [(64, 13, 13)], dict(bins=[1, 2, 4, 8, 16], reduction=8), 5 * (64 * 8 + 16)),
    ("psp", [(30, 7, 7)], dict(bins=[1, 3]), 2 * (30 * 15 + 30)),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params


def test_output_names_and_shapes():
    fpn = check_block(get_block("fpn"), PYRAMID4)
    assert fpn.outputs == {"p0": (256, 56, 56), "p1": (256, 28, 28), "p2": (256, 14, 14), "p3": (256, 7, 7)}
    pan = check_block(get_block("pan"), list(fpn.outputs.values())[1:], out=64)
    assert pan.outputs == {"n0": (64, 28, 28), "n1": (64, 14, 14), "n2": (64, 7, 7)}
    assert check_block(get_block("aspp"), [(2048, 33, 33)]).outputs["out"] == (256, 33, 33)
    assert check_block(get_block("psp"), [(2048, 60, 60)]).outputs["out"] == (4096, 60, 60)


def test_reference_state_dict_keys():
    """torchvision's keys, so its FPN and ASPP weights load."""
    spec = get_block("fpn")
    keys = set(spec.module([8, 16], **spec.resolve({})).state_dict())
    assert {"inner_blocks.0.0.weight", "inner_blocks.1.0.bias", "layer_blocks.1.0.weight"} <= keys
    spec = get_block("aspp")
    keys = set(spec.module(8, **spec.resolve({})).state_dict())
    assert {"convs.0.0.weight", "convs.3.1.running_mean", "convs.4.1.weight", "project.0.weight"} <= keys


def _fpn_reference(xs, inner, layer):
    """torchvision's FeaturePyramidNetwork.forward, written out."""
    last = inner[-1](xs[-1])
    results = [layer[-1](last)]
    for x, i, l in zip(xs[:-1][::-1], inner[:-1][::-1], layer[:-1][::-1]):
        lateral = i(x)
        last = lateral + torch.nn.functional.interpolate(last, size=lateral.shape[-2:], mode="nearest")
        results.insert(0, l(last))
    return results


def test_fpn_computes_torchvision_forward():
    spec = get_block("fpn")
    module = spec.module([8, 16, 32], out=8).eval()
    xs = [torch.randn(2, 8, 15, 15), torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)]
    for got, want in zip(module(xs), _fpn_reference(xs, module.inner_blocks, module.layer_blocks)):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("name, in_shapes, params", [
    ("fpn", [(8, 16, 16), (16, 8, 8), (32, 4, 4)], dict(out=8)),
    ("pan", [(8, 16, 16), (8, 8, 8), (8, 4, 4)], dict(out=8)),
    ("aspp", [(8, 9, 9)], dict(out=8, rates=[2, 3])),
    ("psp", [(8, 12, 12)], {}),
])
def test_torchscript(name, in_shapes, params):
    spec = get_block(name)
    module = spec.module(spec.in_channels(in_shapes), **spec.resolve(params)).eval()
    scripted = torch.jit.script(module)
    xs = [torch.randn(2, *s) for s in in_shapes]
    arg = xs[0] if spec.arity.single else xs
    want, got = module(arg), scripted(arg)
    for w, g in zip(want if isinstance(want, list) else [want], got if isinstance(got, list) else [got]):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("pan", [(8, 16, 16), (8, 4, 4)], {}, "8x4x4"),
    ("pan", [(8, 16, 16), (8,)], {}, "(C, H, W)"),
    ("fpn", [(8, 16, 16), (16,)], {}, "input 1"),
    ("psp", [(3, 8, 8)], {}, "reduction"),
    ("aspp", [(8,)], {}, "(C, H, W)"),
])
def test_shape_errors_name_the_shapes(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spec.infer(in_shapes, **spec.resolve(params))
