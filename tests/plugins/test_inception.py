"""Inception blocks: predictions equal the built modules, parameter counts match torchvision / timm, zoo totals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nascore import Graph
from nascore.blocks.registry import get_block
from nascore.errors import ParamError, ShapeError
from nascore.blocks.testing import check_block

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def bc(cin, cout, kh, kw=None):
    """Parameters of a BasicConv2d: conv without bias plus batch norm (weight and bias)."""
    return cin * cout * kh * (kh if kw is None else kw) + 2 * cout


def v1(cin, b1, b3r, b3, b5r, b5, pp, k=5):
    return bc(cin, b1, 1) + bc(cin, b3r, 1) + bc(b3r, b3, 3) + bc(cin, b5r, 1) + bc(b5r, b5, k) + bc(cin, pp, 1)


def v3_a(cin, pf):
    return bc(cin, 64, 1) + bc(cin, 48, 1) + bc(48, 64, 5) + bc(cin, 64, 1) + bc(64, 96, 3) + bc(96, 96, 3) \
        + bc(cin, pf, 1)


def v3_b(cin):
    return bc(cin, 384, 3) + bc(cin, 64, 1) + bc(64, 96, 3) + bc(96, 96, 3)


def v3_c(cin, c7):
    single = bc(cin, c7, 1) + bc(c7, c7, 1, 7) + bc(c7, 192, 7, 1)
    double = bc(cin, c7, 1) + bc(c7, c7, 7, 1) + bc(c7, c7, 1, 7) + bc(c7, c7, 7, 1) + bc(c7, 192, 1, 7)
    return bc(cin, 192, 1) + single + double + bc(cin, 192, 1)


def v3_d(cin):
    return bc(cin, 192, 1) + bc(192, 320, 3) + bc(cin, 192, 1) + bc(192, 192, 1, 7) + bc(192, 192, 7, 1) \
        + bc(192, 192, 3)


def v3_e(cin):
    return bc(cin, 320, 1) + bc(cin, 384, 1) + bc(384, 384, 1, 3) + bc(384, 384, 3, 1) + bc(cin, 448, 1) \
        + bc(448, 384, 3) + bc(384, 384, 1, 3) + bc(384, 384, 3, 1) + bc(cin, 192, 1)


def up(cat, cin):
    """The residual cells' 1x1 up-projection: a plain conv with bias."""
    return cat * cin + cin


def block35(cin, b1=32, b3r=32, b3=32, dr=32, dm=48, d=64):
    return bc(cin, b1, 1) + bc(cin, b3r, 1) + bc(b3r, b3, 3) + bc(cin, dr, 1) + bc(dr, dm, 3) + bc(dm, d, 3) \
        + up(b1 + b3 + d, cin)


def block17(cin, b1=192, r=128, m=160, o=192):
    return bc(cin, b1, 1) + bc(cin, r, 1) + bc(r, m, 1, 7) + bc(m, o, 7, 1) + up(b1 + o, cin)


def block8(cin, b1=192, r=192, m=224, o=256):
    return bc(cin, b1, 1) + bc(cin, r, 1) + bc(r, m, 1, 3) + bc(m, o, 3, 1) + up(b1 + o, cin)


def reduction_a(cin, n=384, k=256, l=256, m=384):  # noqa: E741 - the paper's names
    return bc(cin, n, 3) + bc(cin, k, 1) + bc(k, l, 3) + bc(l, m, 3)


def reduction_b(cin, ar=256, a=384, br=256, b=288, dr=256, dm=288, d=320):
    return bc(cin, ar, 1) + bc(ar, a, 3) + bc(cin, br, 1) + bc(br, b, 3) + bc(cin, dr, 1) + bc(dr, dm, 3) \
        + bc(dm, d, 3)


GOOGLENET_3A = dict(b1=64, b3_reduce=96, b3=128, b5_reduce=16, b5=32, pool_proj=32)

CASES = [
    # GoogLeNet inception 3a, 4e and 5b (torchvision uses a 3x3 in the "5x5" branch), and the paper's true 5x5
    ("inception_v1", [(192, 28, 28)], dict(GOOGLENET_3A, b5_kernel=3), v1(192, 64, 96, 128, 16, 32, 32, 3),
     (256, 28, 28)),
    ("inception_v1", [(192, 28, 28)], GOOGLENET_3A, v1(192, 64, 96, 128, 16, 32, 32), (256, 28, 28)),
    ("inception_v1", [(528, 14, 14)], dict(b1=256, b3_reduce=160, b3=320, b5_reduce=32, b5=128, pool_proj=128,
                                           b5_kernel=3), v1(528, 256, 160, 320, 32, 128, 128, 3), (832, 14, 14)),
    ("inception_v1", [(832, 7, 7)], dict(b1=384, b3_reduce=192, b3=384, b5_reduce=48, b5=128, pool_proj=128,
                                         b5_kernel=7), v1(832, 384, 192, 384, 48, 128, 128, 7), (1024, 7, 7)),
    ("inception_v1", [(8, 5, 5)], dict(b1=4, b3_reduce=2, b3=4, b5_reduce=2, b5=4, pool_proj=4),
     v1(8, 4, 2, 4, 2, 4, 4), (16, 5, 5)),
    # Inception-v3 (torchvision's Mixed_5b..Mixed_7c)
    ("inception_v3_a", [(192, 35, 35)], dict(pool_features=32), v3_a(192, 32), (256, 35, 35)),
    ("inception_v3_a", [(288, 35, 35)], dict(pool_features=64), v3_a(288, 64), (288, 35, 35)),
    ("inception_v3_b", [(288, 35, 35)], {}, v3_b(288), (768, 17, 17)),
    ("inception_v3_b", [(64, 8, 8)], {}, v3_b(64), (544, 3, 3)),
    ("inception_v3_c", [(768, 17, 17)], dict(c7=128), v3_c(768, 128), (768, 17, 17)),
    ("inception_v3_c", [(768, 17, 17)], dict(c7=192), v3_c(768, 192), (768, 17, 17)),
    ("inception_v3_d", [(768, 17, 17)], {}, v3_d(768), (1280, 8, 8)),
    ("inception_v3_e", [(1280, 8, 8)], {}, v3_e(1280), (2048, 8, 8)),
    ("inception_v3_e", [(2048, 8, 8)], {}, v3_e(2048), (2048, 8, 8)),
    # Inception-ResNet-v2 (timm's Block35 / Block17 / Block8 / Mixed_6a / Mixed_7a)
    ("inception_resnet_a", [(320, 35, 35)], {}, block35(320), (320, 35, 35)),
    ("inception_resnet_a", [(64, 9, 9)], dict(b1=8, b3_reduce=8, b3=16, b3dbl_reduce=8, b3dbl_mid=12, b3dbl=16,
                                              scale=0.5, drop_path=0.1),
     block35(64, 8, 8, 16, 8, 12, 16), (64, 9, 9)),
    ("inception_resnet_b", [(1088, 17, 17)], {}, block17(1088), (1088, 17, 17)),
    ("inception_resnet_b", [(96, 9, 9)], dict(b1=32, b7_reduce=16, b7_mid=24, b7=32, drop_path=0.2),
     block17(96, 32, 16, 24, 32), (96, 9, 9)),
    ("inception_resnet_c", [(2080, 8, 8)], {}, block8(2080), (2080, 8, 8)),
    ("inception_resnet_c", [(2080, 8, 8)], dict(scale=1.0, no_relu=True), block8(2080), (2080, 8, 8)),
    ("inception_resnet_reduction_a", [(320, 35, 35)], {}, reduction_a(320), (1088, 17, 17)),
    ("inception_resnet_reduction_a", [(32, 9, 9)], dict(b3=16, b3dbl_reduce=8, b3dbl_mid=8, b3dbl=16),
     reduction_a(32, 16, 8, 8, 16), (64, 4, 4)),
    ("inception_resnet_reduction_b", [(1088, 17, 17)], {}, reduction_b(1088), (2080, 8, 8)),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params, expected_shape", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params, expected_shape):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params
    assert inference.outputs["out"] == expected_shape


def test_known_counts():
    # torchvision googlenet.inception3a and inception.Mixed_5b, timm inception_resnet_v2.repeat[0], summed by hand
    assert v1(192, 64, 96, 128, 16, 32, 32, 3) == 12_416 + 18_624 + 110_848 + 3_104 + 4_672 + 6_208 == 155_872
    assert v3_a(192, 32) == 255_904
    assert block35(320) == 123_168


SCRIPT_CASES = [
    ("inception_v1", (16, 9, 9), dict(b1=4, b3_reduce=4, b3=8, b5_reduce=2, b5=4, pool_proj=4, b5_kernel=3)),
    ("inception_v3_a", (16, 9, 9), dict(pool_features=8)),
    ("inception_v3_b", (16, 9, 9), {}),
    ("inception_v3_c", (16, 9, 9), dict(c7=8)),
    ("inception_v3_d", (16, 9, 9), {}),
    ("inception_v3_e", (16, 5, 5), {}),
    ("inception_resnet_a", (16, 9, 9), dict(b1=4, b3_reduce=4, b3=4, b3dbl_reduce=4, b3dbl_mid=6, b3dbl=8,
                                            drop_path=0.1)),
    ("inception_resnet_b", (16, 9, 9), dict(b1=8, b7_reduce=4, b7_mid=6, b7=8)),
    ("inception_resnet_c", (16, 5, 5), dict(b1=8, b3_reduce=8, b3_mid=8, b3=8, no_relu=True)),
    ("inception_resnet_reduction_a", (16, 9, 9), dict(b3=8, b3dbl_reduce=4, b3dbl_mid=4, b3dbl=8)),
    ("inception_resnet_reduction_b", (16, 9, 9), dict(b3a_reduce=4, b3a=8, b3b_reduce=4, b3b=8, b3dbl_reduce=4,
                                                      b3dbl_mid=4, b3dbl=8)),
]


@pytest.mark.parametrize("name, shape, params", SCRIPT_CASES, ids=[c[0] for c in SCRIPT_CASES])
def test_torchscript(name, shape, params):
    spec = get_block(name)
    resolved = spec.resolve(params)
    module = spec.module(shape[0], **resolved).eval()
    scripted = torch.jit.script(module)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.allclose(scripted(x), module(x), atol=1e-6)
    # training mode (drop path active where set) keeps the predicted shape
    module.train()
    assert tuple(module(x).shape[1:]) == spec.infer([shape], **resolved).outputs["out"]


def test_residual_scale_and_relu():
    spec = get_block("inception_resnet_c")
    block = spec.module(16, **spec.resolve(dict(b1=4, b3_reduce=4, b3_mid=4, b3=4, scale=0.0, no_relu=True))).eval()
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        assert torch.equal(block(x), x)  # scale 0 and no ReLU: the identity
    relu = spec.module(16, **spec.resolve(dict(b1=4, b3_reduce=4, b3_mid=4, b3=4, scale=0.0))).eval()
    with torch.no_grad():
        assert torch.equal(relu(x), torch.relu(x))
    assert get_block("inception_resnet_a").resolve({})["scale"] == 0.17
    assert get_block("inception_resnet_b").resolve({})["scale"] == 0.10


def test_channel_params_scale_with_width():
    for name in ("inception_v1", "inception_v3_a", "inception_v3_c", "inception_resnet_a", "inception_resnet_b",
                 "inception_resnet_c", "inception_resnet_reduction_a", "inception_resnet_reduction_b"):
        spec = get_block(name)
        ints = [p for p in spec.params if p.type is int and p.name != "b5_kernel"]
        assert ints and all(p.channels for p in ints), name
        assert spec.paper


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("inception_v3_b", [(64, 2, 2)], {}, "does not fit"),
    ("inception_v3_d", [(64, 2, 2)], {}, "does not fit"),
    ("inception_resnet_reduction_a", [(32, 2, 2)], dict(b3=8, b3dbl_reduce=8, b3dbl_mid=8, b3dbl=8), "does not fit"),
    ("inception_v1", [(64,)], {}, "64"),
])
def test_shape_errors(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment):
        spec.infer(in_shapes, **spec.resolve(params))


def test_bad_kernel_is_a_param_error():
    with pytest.raises(ParamError, match="b5_kernel"):
        get_block("inception_v1").resolve(dict(b5_kernel=4))


@pytest.mark.parametrize("graph, params, gmacs", [
    ("googlenet", 6_624_904, 1.505),      # torchvision googlenet, aux_logits=False
    ("inception_v3", 23_834_568, 5.731),  # torchvision inception_v3, aux_logits=False, 299x299
])
def test_zoo_totals(graph, params, gmacs):
    analysis = Graph.load(GRAPHS / f"{graph}.yaml").analyse()
    assert list(analysis.outputs.values()) == [(1000,)]
    assert analysis.params == params
    assert abs(analysis.macs / 1e9 - gmacs) / gmacs < 0.02


def test_inception_resnet_v2_total():
    """timm's inception_resnet_v2 (55,843,464 parameters): stem and Mixed_5b by hand, the cells by chained infer."""
    stem = bc(3, 32, 3) + bc(32, 32, 3) + bc(32, 64, 3) + bc(64, 80, 1) + bc(80, 192, 3)
    mixed_5b = bc(192, 96, 1) + bc(192, 48, 1) + bc(48, 64, 5) + bc(192, 64, 1) + bc(64, 96, 3) + bc(96, 96, 3) \
        + bc(192, 64, 1)
    plan = ([("inception_resnet_a", {})] * 10 + [("inception_resnet_reduction_a", {})]
            + [("inception_resnet_b", {})] * 20 + [("inception_resnet_reduction_b", {})]
            + [("inception_resnet_c", {})] * 9 + [("inception_resnet_c", dict(scale=1.0, no_relu=True))]
            + [("conv_bn_act", dict(out=1536, kernel=1))])
    shape, total = (320, 35, 35), stem + mixed_5b
    for name, params in plan:
        spec = get_block(name)
        inference = spec.infer([shape], **spec.resolve(params))
        shape, total = inference.outputs["out"], total + inference.params
    assert shape == (1536, 8, 8)
    assert total + 1536 * 1000 + 1000 == 55_843_464
