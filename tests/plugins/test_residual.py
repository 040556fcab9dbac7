"""Residual-family blocks: predictions equal the built modules, known parameter counts, scripting, zoo totals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nascore import Graph
from nascore.blocks.registry import get_block
from nascore.errors import ShapeError
from nascore.blocks.testing import check_block, measure

GRAPHS = Path(__file__).resolve().parents[2] / "graphs"


def bn(c):
    return 2 * c


def se(c, rd):
    return c * rd + rd + rd * c + c


def basic(cin, cout, stride=1, rd=0):
    n = cin * cout * 9 + bn(cout) + cout * cout * 9 + bn(cout)
    if stride != 1 or cin != cout:
        n += cin * cout + bn(cout)
    return n + (se(cout, rd) if rd else 0)


def bottleneck(cin, cout, width, groups=1, stride=1, rd=0):
    n = cin * width + bn(width) + width * (width // groups) * 9 + bn(width) + width * cout + bn(cout)
    if stride != 1 or cin != cout:
        n += cin * cout + bn(cout)
    return n + (se(cout, rd) if rd else 0)


def res2net(cin, cout, width, scale, stride=1, groups=1):
    n = cin * width * scale + bn(width * scale)
    n += max(1, scale - 1) * (width * (width // groups) * 9 + bn(width))
    n += width * scale * cout + bn(cout)
    if stride != 1 or cin != cout:
        n += cin * cout + bn(cout)
    return n


def dense(cin, layers, k=32, bn_size=4):
    n = 0
    for i in range(layers):
        c = cin + i * k
        n += bn(c) + c * bn_size * k + bn(bn_size * k) + bn_size * k * k * 9
    return n


CASES = [
    ("resnet_basic", [(64, 56, 56)], dict(out=64), basic(64, 64)),
    ("resnet_basic", [(64, 56, 56)], dict(out=128, stride=2), basic(64, 128, 2)),
    ("resnet_basic", [(32, 15, 15)], dict(out=32, stride=2, se_ratio=0.25, act="prelu", drop_path=0.1),
     basic(32, 32, 2, rd=8) + 3),  # three PReLUs: conv1, SE, after the add
    ("resnet_basic", [(64, 8, 8)], dict(out=96, se_ratio=0.0625), basic(64, 96, rd=8)),  # 6 rounds up to 8
    ("resnet_bottleneck", [(64, 56, 56)], dict(out=256), bottleneck(64, 256, 64)),
    ("resnet_bottleneck", [(256, 56, 56)], dict(out=256), bottleneck(256, 256, 64)),
    ("resnet_bottleneck", [(256, 56, 56)], dict(out=512, stride=2), bottleneck(256, 512, 128, stride=2)),
    ("bottleneck", [(256, 28, 28)], dict(out=256, se_ratio=0.0625), bottleneck(256, 256, 64, rd=16)),
    ("resnext", [(256, 28, 28)], dict(out=512, stride=2, groups=32, base_width=4),
     bottleneck(256, 512, 256, groups=32, stride=2)),
    ("resnet_bottleneck", [(64, 9, 9)], dict(out=96, expansion=2, base_width=32, act="silu"),
     bottleneck(64, 96, 24)),
    ("res2net", [(64, 56, 56)], dict(out=256), res2net(64, 256, 26, 4)),
    ("res2net", [(256, 56, 56)], dict(out=256), res2net(256, 256, 26, 4)),
    ("res2net", [(256, 28, 28)], dict(out=512, stride=2, scale=6), res2net(256, 512, 52, 6, 2)),
    ("res2net", [(64, 15, 15)], dict(out=64, stride=2, scale=1, base_width=64), res2net(64, 64, 16, 1, 2)),
    ("res2net", [(256, 14, 14)], dict(out=256, groups=8, base_width=4, se_ratio=0.0625),
     res2net(256, 256, 32, 4, groups=8) + se(256, 16)),
    ("dense_block", [(64, 56, 56)], dict(layers=6), dense(64, 6)),
    ("dense_block", [(16, 9, 9)], dict(layers=3, growth=12, bn_size=2, drop_rate=0.2), dense(16, 3, 12, 2)),
    ("dense_block", [(16, 9, 9)], dict(layers=0), 0),
    ("dense_transition", [(256, 56, 56)], {}, bn(256) + 256 * 128),
    ("dense_transition", [(100, 7, 7)], dict(compression=0.3), bn(100) + 100 * 30),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params


def test_output_shapes():
    assert check_block(get_block("resnet_basic"), [(64, 56, 56)], out=128, stride=2).outputs["out"] == (128, 28, 28)
    assert check_block(get_block("resnet_bottleneck"), [(1024, 14, 14)], out=2048, stride=2).outputs["out"] == \
        (2048, 7, 7)
    assert check_block(get_block("res2net"), [(256, 15, 15)], out=512, stride=2).outputs["out"] == (512, 8, 8)
    assert check_block(get_block("dense_block"), [(64, 56, 56)], layers=6).outputs["out"] == (256, 56, 56)
    assert check_block(get_block("dense_transition"), [(256, 56, 56)]).outputs["out"] == (128, 28, 28)
    assert check_block(get_block("dense_transition"), [(255, 7, 7)]).outputs["out"] == (127, 3, 3)


@pytest.mark.parametrize("name, in_shape, params", [
    ("resnet_basic", (16, 8, 8), dict(out=32, stride=2, se_ratio=0.25, drop_path=0.2)),
    ("resnet_bottleneck", (32, 8, 8), dict(out=64, groups=4, base_width=16, se_ratio=0.0625, drop_path=0.1)),
    ("res2net", (32, 8, 8), dict(out=64, stride=2, se_ratio=0.25, drop_path=0.1)),
    ("res2net", (64, 8, 8), dict(out=64)),
    ("dense_block", (16, 8, 8), dict(layers=3, growth=8, drop_rate=0.1)),
    ("dense_transition", (16, 8, 8), {}),
])
def test_scriptable(name, in_shape, params):
    spec = get_block(name)
    torch.manual_seed(0)
    module = spec.module(in_shape[0], **spec.resolve(params)).eval()
    scripted = torch.jit.script(module)
    x = torch.randn(2, *in_shape)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), module(x))


def test_res2net_hierarchy():
    """A block's split i (i > 0) adds split i-1's output before its 3x3; a stage's first block keeps them apart."""
    spec = get_block("res2net")
    for in_channels, first in ((64, False), (32, True)):
        m = spec.module(in_channels, **spec.resolve(dict(out=64, scale=4, base_width=64))).eval()
        assert m.is_first is first
        seen = {}
        m.conv1.register_forward_hook(lambda mod, args, out: seen.update(reduced=out.clone()))
        m.convs[0].register_forward_hook(lambda mod, args, out: seen.update(first=out.clone()))
        m.convs[1].register_forward_pre_hook(lambda mod, args: seen.update(second_in=args[0].clone()))
        with torch.no_grad():
            m(torch.randn(1, in_channels, 6, 6))
        split1 = seen["reduced"][:, 16:32]
        expected = split1 if first else split1 + seen["first"]
        torch.testing.assert_close(seen["second_in"], expected)


def test_drop_path_is_per_sample_in_training():
    spec = get_block("resnet_basic")
    m = spec.module(8, **spec.resolve(dict(out=8, drop_path=0.5))).train()
    assert m.drop_path.drop_prob == 0.5
    m.eval()
    x = torch.randn(2, 8, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(m(x), m(x))


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("resnet_bottleneck", [(64, 8, 8)], dict(out=2), "at least 4"),
    ("res2net", [(64, 8, 8)], dict(out=3), "at least 4"),
    ("resnext", [(64, 8, 8)], dict(out=64, base_width=2), "raise base_width"),
    ("resnet_basic", [(64,)], dict(out=64), "feature map"),
    ("dense_transition", [(1, 4, 4)], dict(compression=0.5), "no channels"),
    ("dense_transition", [(8, 1, 1)], {}, "does not fit"),
])
def test_shape_errors_name_the_shapes(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment):
        spec.infer(in_shapes, **spec.resolve(params))


# -- zoo graphs -----------------------------------------------------------------------------------------------------

ZOO = {  # parameters (exact) and GMACs (within 2%) from /work/shared/REFERENCE.md
    "resnet18": (11_689_512, 1.819),
    "resnet50": (25_557_032, 4.112),
    "resnext50_32x4d": (25_028_904, 4.259),
    "se_resnet50": (28_088_024, None),
    "densenet121": (7_978_856, 2.866),
}


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_totals(name):
    analysis = Graph.load(GRAPHS / f"{name}.yaml").analyse()
    ref_params, ref_gmacs = ZOO[name]
    assert analysis.params == ref_params
    if ref_gmacs is not None:
        assert abs(analysis.macs / 1e9 - ref_gmacs) / ref_gmacs < 0.02, analysis.macs


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_modules_match_prediction(name):
    """The compiled network (meta device) has the predicted output, parameters and MACs."""
    graph = Graph.load(GRAPHS / f"{name}.yaml")
    with torch.device("meta"):
        module = graph.build()
    real = measure(module, [graph.input_shape])
    analysis = graph.analyse()
    assert list(real.outputs.values()) == [(1000,)]
    assert (real.params, real.macs) == (analysis.params, analysis.macs)


def _stage(block, out, repeat, stride, **params):
    return dict(block=block, out=out, repeat=repeat, **({"stride": stride} if stride > 1 else {}), **params)


@pytest.mark.parametrize("params, mparams, gmacs", [
    ({}, 25.7, 4.3),                                  # res2net50_26w_4s
    (dict(base_width=4, groups=8), 24.7, 4.2),        # res2next50
])
def test_res2net50_matches_timm_model_card(params, mparams, gmacs):
    """Res2Net-50 assembled from res2net blocks: timm's model cards give 25.7M / 4.3 GMACs and 24.7M / 4.2."""
    nodes = [dict(name="stem", block="conv_bn_act", out=64, kernel=7, stride=2),
             dict(name="pool", block="max_pool", kernel=3, stride=2, padding=1)]
    for i, (out, repeat) in enumerate(((256, 3), (512, 4), (1024, 6), (2048, 3))):
        nodes.append(dict(name=f"layer{i + 1}", **_stage("res2net", out, repeat, 1 if i == 0 else 2, **params)))
    nodes += [dict(name="gap", block="global_avg_pool"), dict(name="fc", block="linear", out=1000)]
    analysis = Graph.from_dict(dict(name="res2net50", input=[3, 224, 224], nodes=nodes)).analyse()
    assert round(analysis.params / 1e6, 1) == mparams
    assert round(analysis.macs / 1e9, 1) == gmacs
