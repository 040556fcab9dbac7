"""Neck blocks: each prediction equals the built module (shapes, params, MACs), known parameter counts, and the
papers' fusion formulas (BiFPN's fast normalised fusion, ASFF's per-pixel softmax)."""

from __future__ import annotations

import pytest
import torch

from nascore.blocks.registry import get_block
from nascore.errors import GraphError, ParamError, ShapeError
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
    # FPN then PAN: the two blocks' own counts added
    ("fpn_pan", PYRAMID3, dict(out=128), (128 + 256 + 512) * 128 + 3 * 128 + 3 * (128 * 128 * 9 + 128)
     + 5 * (128 * 128 * 9 + 256)),
    # EfficientDet-D0's BiFPN (see test_bifpn_d0_matches_effdet)
    ("bifpn", [(40, 64, 64), (112, 32, 32), (320, 16, 16)], dict(out=64, repeats=3, extra_levels=2), 194_361),
    # 2 levels of the width, one pass: two nodes of 2 inputs, each depthwise 3x3 + pointwise 1x1 + BN, 2 weights
    ("bifpn", [(8, 16, 16), (8, 8, 8)], dict(out=8, repeats=1), 2 * (8 * 9 + 8 * 8 + 16 + 2)),
    ("bifpn", [(8, 15, 15), (16, 8, 8), (8, 4, 4)], dict(out=8, repeats=2, fusion="softmax", norm="group",
                                                        act="prelu"), None),
    ("bifpn", [(8, 15, 15)], dict(out=8, repeats=1, extra_levels=1, norm="none"), None),
    ("asff", [(8, 16, 16), (16, 8, 8), (32, 4, 4)], dict(out=16), None),
    ("asff", [(16, 15, 15), (16, 8, 8), (16, 4, 4), (8, 2, 2)], dict(out=16, compress=4, act="prelu", norm="none"),
     None),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert expected_params is None or inference.params == expected_params


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
    ("fpn_pan", [(8, 15, 15), (16, 8, 8), (32, 4, 4)], dict(out=8)),
    ("bifpn", [(8, 15, 15), (16, 8, 8), (32, 4, 4)], dict(out=8, repeats=2, extra_levels=1)),
    ("bifpn", [(8, 16, 16), (8, 8, 8)], dict(out=8, fusion="softmax")),
    ("asff", [(8, 15, 15), (16, 8, 8), (32, 4, 4)], dict(out=8, compress=4)),
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
    ("bifpn", [(8, 16, 16), (8, 4, 4)], {}, "input 1 is 8x4x4 but input 0 (8x16x16) halved is 8x8"),
    ("bifpn", [(8, 16, 16)], {}, "parameter 'extra_levels'"),
    ("bifpn", [(8, 16, 16), (8,)], {}, "(C, H, W)"),
    ("asff", [(8, 8, 8), (8, 16, 16)], {}, "input 1 is 8x16x16 but input 0 (8x8x8) halved is 4x4"),
])
def test_shape_errors_name_the_shapes(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        spec.infer(in_shapes, **spec.resolve(params))


# -- BiFPN ----------------------------------------------------------------------------------------------------------


def test_bifpn_d0_matches_effdet():
    """EfficientDet-D0's BiFPN: C3-C5 of EfficientNet-B0 (40, 112, 320 channels), width 64, 3 repeats, P6 and P7.

    Reference: effdet 0.4.1 (Ross Wightman's PyTorch port of google/automl's EfficientDet),
    ``EfficientDet(get_efficientdet_config("efficientdet_d0")).fpn`` has 194,361 parameters and, counted by nascore's
    MacCounter on a 512x512 image, 140,743,680 MACs; its state dict (228 tensors) loads into this block's in order
    and the outputs agree to 4e-7 (checked once where effdet imports; it does not beside the pinned torch). The same
    count derived by hand from the official layer list (every conv bias-free before its BN):
    """
    w, bn = 64, 2 * 64
    separable = w * 9 + w * w + bn                   # depthwise 3x3, pointwise 1x1, BN: after each fusion node
    edge_weights = 4 * 2 + 3 * 3 + 2                 # top-down P6..P3: 2 inputs; bottom-up P4..P6: 3, P7: 2
    layer = 8 * separable + edge_weights             # 4 top-down + 4 bottom-up nodes
    lateral = lambda c: c * w + bn                   # noqa: E731 - 1x1 conv + BN where channels differ from 64
    p6 = lateral(320)                                # P6 = max_pool(lateral(C5)), P7 = max_pool(P6)
    first = lateral(40) + 2 * lateral(112) + 2 * lateral(320)   # one lateral per edge: P4, P5 read twice
    assert p6 + 3 * layer + first == 194_361
    inference = check_block(get_block("bifpn"), [(40, 64, 64), (112, 32, 32), (320, 16, 16)], out=64, repeats=3,
                            extra_levels=2)
    assert inference.params == 194_361 and inference.macs == 140_743_680
    assert inference.outputs == {"p0": (64, 64, 64), "p1": (64, 32, 32), "p2": (64, 16, 16), "p3": (64, 8, 8),
                                 "p4": (64, 4, 4)}


def test_efficientdet_d0_zoo_graph():
    """graphs/efficientnet_b0_bifpn.yaml = effdet's efficientdet_d0 backbone (timm efficientnet_b0 features,
    3,595,388 = torchvision's efficientnet_b0 without head conv and classifier) + BiFPN (194,361); MACs counted on
    effdet's modules by nascore's MacCounter: 2,124,031,488."""
    from nascore import Graph
    from tests.conftest import GRAPHS

    graph = Graph.load(GRAPHS / "efficientnet_b0_bifpn.yaml")
    analysis = graph.analyse()
    assert analysis.params == 3_595_388 + 194_361
    assert analysis.macs == 2_124_031_488
    assert [s[1] for s in analysis.outputs.values()] == [64, 32, 16, 8, 4]
    bn = graph.scale(resolution=64).build().get_submodule("bifpn").extra[0][0].norm
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def _paper_fusion(weights, inputs, eps=1e-4):
    """EfficientDet eq. (3): O = sum_i w_i I_i / (eps + sum_j w_j), with w_i = relu(w_i) for non-negative weights."""
    w = [max(float(v), 0.0) for v in weights]
    return sum(wi * x for wi, x in zip(w, inputs)) / (eps + sum(w))


def test_bifpn_fast_fusion_is_the_paper_formula():
    """Two levels at the width (no laterals), one pass: P0_out = conv(act(fuse(P0, up(P1)))),
    P1_out = conv(act(fuse(P1, maxpool(P0_out)))), with weights set by hand (one negative: ReLU'd to 0)."""
    spec = get_block("bifpn")
    module = spec.module([4, 4], **spec.resolve(dict(out=4, repeats=1))).eval()
    layer = module.layers[0]
    td, bu = layer.top_down[0], layer.bottom_up[0]
    with torch.no_grad():
        td.weight.copy_(torch.tensor([0.7, 2.0]))
        bu.weight.copy_(torch.tensor([-1.0, 0.5]))
    x0, x1 = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        out0, out1 = module([x0, x1])
        up = torch.nn.functional.interpolate(x1, size=(8, 8), mode="nearest")
        want0 = td.conv(td.act(_paper_fusion([0.7, 2.0], [x0, up])))
        want1 = bu.conv(bu.act(_paper_fusion([-1.0, 0.5], [x1, torch.nn.functional.max_pool2d(want0, 3, 2, 1)])))
    torch.testing.assert_close(out0, want0)
    torch.testing.assert_close(out1, want1)
    # softmax fusion: EfficientDet's slower alternative, weights exp(w_i) / sum exp(w_j)
    soft = spec.module([4, 4], **spec.resolve(dict(out=4, repeats=1, fusion="softmax"))).eval()
    node = soft.layers[0].top_down[0]
    with torch.no_grad():
        node.weight.copy_(torch.tensor([0.3, -0.4]))
        e = torch.tensor([0.3, -0.4]).exp()
        want = node.conv(node.act((e[0] * x0 + e[1] * up) / e.sum()))
        torch.testing.assert_close(soft([x0, x1])[0], want)


def test_bifpn_laterals_only_where_channels_differ():
    spec = get_block("bifpn")
    module = spec.module([8, 16, 16], **spec.resolve(dict(out=16, repeats=2)))
    first, second = module.layers
    kinds = lambda node: [type(m).__name__ for m in node.laterals]   # noqa: E731
    assert kinds(first.top_down[1]) == ["ConvNormAct", "Identity"]        # level 0 (8 channels), td_1
    assert kinds(first.bottom_up[0]) == ["Identity", "Identity", "Identity"]
    assert all(kinds(n) == ["Identity"] * len(n.laterals) for n in [*second.top_down, *second.bottom_up])


# -- ASFF -----------------------------------------------------------------------------------------------------------


def test_asff_is_the_paper_formula():
    """Liu et al. 2019, eq. (1)-(2): y^l = sum_n alpha^l_n * x^{n->l}, alpha^l_n = exp(lambda_n) / sum_m exp(lambda_m),
    the lambdas per pixel from 1x1 convs on the resized maps; then the 3x3 conv."""
    spec = get_block("asff")
    module = spec.module([8, 16, 32], **spec.resolve(dict(out=8, compress=4))).eval()
    xs = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8), torch.randn(2, 32, 4, 4)]
    with torch.no_grad():
        outs = module(xs)
        for level, node in enumerate(module.levels):
            resized = node.resized(xs)
            assert all(r.shape == (2, 8, *xs[level].shape[-2:]) for r in resized)
            lam = node.weight_levels(torch.cat([conv(r) for conv, r in zip(node.weight_convs, resized)], 1))
            alpha = lam.exp() / lam.exp().sum(1, keepdim=True)
            torch.testing.assert_close(alpha.sum(1), torch.ones(2, *xs[level].shape[-2:]))
            fused = sum(alpha[:, n:n + 1] * resized[n] for n in range(3))
            torch.testing.assert_close(outs[level], node.expand(fused))
    # resizing as the paper: 2x down by a 3x3 stride-2 conv, 4x down by a max pool first; up by 1x1 conv + nearest
    coarse = module.levels[2].resize
    assert [type(m).__name__ for m in coarse[0]] == ["MaxPool2d", "ConvNormAct"]
    assert [type(m).__name__ for m in coarse[1]] == ["ConvNormAct"]


def test_asff_level_matches_yolov3_asff():
    """YOLOv3-ASFF's ASFF(level=1) (ruinmessi/ASFF, models/network_blocks.py: dims 512, 256, 256 coarse to fine,
    inter_dim 256, compress_c 16, every add_conv a bias-free conv + BN + leaky ReLU): compress_level_0 512->256 1x1,
    stride_level_2 256->256 3x3 stride 2, weight_level_0..2 256->16 1x1, weight_levels 48->3 1x1 with bias. Its expand
    (3x3, 256->512) is the one layer that differs here: this neck keeps every level at the width."""
    spec = get_block("asff")
    module = spec.module([256, 256, 512], **spec.resolve(dict(out=256)))
    level = module.levels[1]
    count = sum(p.numel() for p in level.parameters()) - sum(p.numel() for p in level.expand.parameters())
    reference = (512 * 256 + 512) + (256 * 256 * 9 + 512) + 3 * (256 * 16 + 32) + (48 * 3 + 3)
    assert count == reference == 734_451
    assert level.resize[1].__class__.__name__ == "Identity"


# -- errors ---------------------------------------------------------------------------------------------------------


def test_bad_neck_parameters_and_inputs_are_named():
    with pytest.raises(ParamError, match=r"parameter 'fusion'.*expected one of \['fast', 'softmax'\]"):
        get_block("bifpn").resolve({"fusion": "weighted"})
    with pytest.raises(ParamError, match=r"parameter 'repeats'.*got 0, expected int in \[1, 16\]"):
        get_block("bifpn").resolve({"repeats": 0})
    with pytest.raises(ParamError, match=r"parameter 'compress'"):
        get_block("asff").resolve({"compress": 0})
    from nascore import Graph

    g = Graph("one", (3, 16, 16))
    g.add("c", "conv_bn_act", out=8)
    g.add("asff", "asff", inputs=["c"], out=8)
    with pytest.raises(GraphError, match=r"asff.*at least 2 inputs"):
        g.analyse()
