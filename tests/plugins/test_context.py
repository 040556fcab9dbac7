"""Context blocks: deformable convolution v2 equal to torchvision's, SCConv and strip pooling equal to their papers'
equations written out straight, parameter counts from the papers' layer lists, estimates, errors, the macro space."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from nascore_plugins import context

from nascore.blocks.estimate import estimate, inference_of
from nascore.blocks.registry import get_block
from nascore.blocks.testing import check_block
from nascore.errors import NascoreError, ParamError, ShapeError
from nascore.nas.space import SearchSpace
from tests.conftest import ROOT
from tests.plugins.deform_conv_cases import CASES, FIXTURE, run

# -- deformable convolution: the pure-torch function against torchvision's recorded results -------------------------

REFERENCE = json.loads(FIXTURE.read_text())


def test_reference_was_recorded_by_torchvision_for_every_case():
    assert REFERENCE["torchvision"] and set(REFERENCE["cases"]) == set(CASES)


@pytest.mark.parametrize("name", list(CASES))
def test_pure_torch_deform_conv_equals_torchvision(name):
    """Outputs and gradients (input, offsets, mask, weight, bias) of a fixed loss, in float64 and float32."""
    recorded = REFERENCE["cases"][name]
    expected = torch.tensor(recorded["output"], dtype=torch.float64).reshape(recorded["shape"])
    out, grads = run(context.deform_conv2d_torch, CASES[name])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    assert grads == pytest.approx(recorded["gradients"], rel=1e-10, abs=1e-12)
    out32, _ = run(context.deform_conv2d_torch, CASES[name], torch.float32)
    torch.testing.assert_close(out32.double(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("stride, padding, dilation, groups, kernel", [
    ((1, 1), (1, 1), (1, 1), 1, (3, 3)),
    ((2, 1), (0, 2), (1, 2), 2, (3, 2)),
    ((2, 2), (2, 2), (2, 2), 4, (1, 3)),
])
def test_zero_offsets_and_unit_mask_are_the_plain_convolution(stride, padding, dilation, groups, kernel):
    torch.manual_seed(0)
    x, weight, bias = torch.randn(2, 8, 9, 7), torch.randn(12, 8 // groups, *kernel), torch.randn(12)
    expected = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    ho, wo = expected.shape[2:]
    k = kernel[0] * kernel[1]
    offset, mask = torch.zeros(2, 2 * 2 * k, ho, wo), torch.ones(2, 2 * k, ho, wo)   # two offset groups
    for m in (mask, None):
        out = context.deform_conv2d_torch(x, offset, weight, bias, stride, padding, dilation, m)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_offsets_are_dy_then_dx_per_kernel_point():
    """An offset of (+1, 0) everywhere moves every sample a row down: a convolution padded 0 above and 2 below."""
    torch.manual_seed(0)
    x, weight = torch.randn(1, 3, 6, 5), torch.randn(4, 3, 3, 3)
    offset = torch.zeros(1, 18, 6, 5)
    offset[:, 0::2] = 1.0
    torch.testing.assert_close(context.deform_conv2d_torch(x, offset, weight, padding=(1, 1)),
                               F.conv2d(F.pad(x, (1, 1, 0, 2)), weight), rtol=1e-5, atol=1e-5)


def test_uses_torchvision_where_it_imports_but_never_on_the_meta_device(monkeypatch):
    calls = []

    def fake(x, offset, weight, bias, stride, padding, dilation, mask):
        calls.append((stride, padding, dilation, mask is None))
        return torch.zeros(1)

    monkeypatch.setattr(context, "_torchvision_op", lambda: fake)
    x, offset, weight = torch.zeros(1, 2, 4, 4), torch.zeros(1, 18, 4, 4), torch.zeros(3, 2, 3, 3)
    assert context.deform_conv2d(x, offset, weight, None, (1, 1), (1, 1), (1, 1), None).shape == (1,)
    assert calls == [((1, 1), (1, 1), (1, 1), True)]
    meta = context.deform_conv2d(x.to("meta"), offset.to("meta"), weight.to("meta"), None, (1, 1), (1, 1), (1, 1))
    assert meta.shape == (1, 3, 4, 4) and len(calls) == 1


def test_deform_conv_starts_as_half_the_plain_convolution():
    """The offset/mask predictor is zero-initialised: offsets 0, mask sigmoid(0) = 0.5 (DCNv2); v1 has no mask."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7)
    for modulated, scale in ((True, 0.5), (False, 1.0)):
        layer = context.DeformConv2d(4, 6, 3, stride=2, dilation=2, offset_groups=2, modulated=modulated)
        assert not layer.offset.weight.any() and not layer.offset.bias.any()
        expected = scale * F.conv2d(x, layer.weight, None, 2, 2, 2) + layer.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_deform_conv_learns_offsets():
    layer = context.DeformConv2d(2, 2, 3)
    layer(torch.randn(1, 2, 5, 5)).square().sum().backward()
    assert layer.offset.weight.grad.abs().sum() > 0


# -- parameter counts from the papers' layer lists --------------------------------------------------------------------


def bn(c):
    return 2 * c


def dcn(cin, out, kh, kw, groups=1, offset_groups=1, modulated=True, norm=True):
    """Offset (+ mask) predictor kxk with bias, main kxk (bias only without a norm), norm."""
    predicted = offset_groups * kh * kw * (3 if modulated else 2)        # (dy, dx) and a mask value per point
    predictor = cin * predicted * kh * kw + predicted
    return predictor + out * cin // groups * kh * kw + (bn(out) if norm else out)


def scconv(cin, out):
    """K1 (C-C/2 -> out-out/2), K2 and K3 (C/2 -> C/2), K4 (C/2 -> out/2): 3x3 without bias, each with its BN."""
    a, b = cin // 2, out // 2
    return (cin - a) * (out - b) * 9 + bn(out - b) + 2 * (a * a * 9 + bn(a)) + a * b * 9 + bn(b)


def strip(c, mid, k=3):
    """k x 1 and 1 x k strip convolutions without bias, each with its BN; 1x1 fusion with bias."""
    return 2 * (c * mid * k + bn(mid)) + mid * c + c


CASES_BLOCKS = [
    ("deform_conv", [(16, 12, 12)], dict(out=32), dcn(16, 32, 3, 3), (32, 12, 12)),
    ("dcnv2", [(16, 12, 12)], dict(out=32, stride=2, kernel=[3, 5], dilation=2, groups=4, offset_groups=8),
     dcn(16, 32, 3, 5, 4, 8), (32, 6, 6)),
    ("deform_conv", [(6, 9, 9)], dict(out=9, stride=2, groups=3, modulated=False, norm="none", act="silu"),
     dcn(6, 9, 3, 3, 3, modulated=False, norm=False), (9, 5, 5)),
    ("deform_conv", [(8, 7, 7)], dict(out=8, act="prelu", norm="group"), dcn(8, 8, 3, 3) + 1, (8, 7, 7)),
    ("scconv", [(64, 16, 16)], dict(out=64), scconv(64, 64), (64, 16, 16)),
    ("scconv", [(32, 15, 15)], dict(out=64, stride=2, pooling_r=2, upsample="bilinear"), scconv(32, 64), (64, 8, 8)),
    ("self_calibrated_conv", [(7, 9, 9)], dict(out=5, pooling_r=9, act="prelu"), scconv(7, 5) + 1, (5, 9, 9)),
    ("strip_pool", [(32, 12, 9)], {}, strip(32, 32), (32, 12, 9)),
    ("spm", [(32, 5, 7)], dict(mid_ratio=0.25, kernel=5, act="none"), strip(32, 8, 5), (32, 5, 7)),
    ("strip_pooling", [(3, 1, 4)], dict(mid_ratio=0.1, kernel=1), strip(3, 1, 1), (3, 1, 4)),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params, expected_shape", CASES_BLOCKS,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES_BLOCKS)])
def test_formula_matches_module_and_paper(name, in_shapes, params, expected_params, expected_shape):
    inference = check_block(get_block(name), in_shapes, **params)   # infer == module on the meta device, MACs too
    assert inference.params == expected_params
    assert inference.outputs == {"out": expected_shape}


@pytest.mark.parametrize("name, in_shapes, params", [(c[0], c[1], c[2]) for c in CASES_BLOCKS],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES_BLOCKS)])
def test_meta_estimate_equals_the_built_module(name, in_shapes, params):
    """The estimator's meta-device measurement (no formula) against the module built and run on the CPU."""
    spec = get_block(name)
    resolved = spec.resolve(params)
    measured = estimate(spec, in_shapes, resolved)
    assert measured == inference_of(spec, in_shapes, resolved)
    module = spec.module(in_shapes[0][0], **resolved).eval()
    with torch.no_grad():
        y = module(torch.randn(2, *in_shapes[0]))
    assert (2, *measured.outputs["out"]) == tuple(y.shape)
    assert measured.params == sum(p.numel() for p in module.parameters())


def test_deform_conv_macs_are_those_of_a_convolution_plus_its_predictor():
    inference = check_block(get_block("deform_conv"), [(8, 10, 10)], out=16, norm="none")
    assert inference.macs == 100 * (16 * 8 * 9) + 100 * (27 * 8 * 9)


# -- SCConv and strip pooling against the papers' equations ----------------------------------------------------------


def _randomise_norms(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g))


def _bn(y, m):
    return (y - m.running_mean.view(1, -1, 1, 1)) / torch.sqrt(m.running_var.view(1, -1, 1, 1) + m.eps) \
        * m.weight.view(1, -1, 1, 1) + m.bias.view(1, -1, 1, 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_scconv_is_the_papers_equations(stride):
    """Y1 = K4(K3(X1) * sigmoid(X1 + Up(K2(AvgPool_r(X1))))), Y2 = K1(X2), ReLU([Y1, Y2]); Up is nearest, which for
    an r that divides the size repeats each pooled value r x r times."""
    spec = get_block("scconv")
    torch.manual_seed(0)
    m = spec.module(6, **spec.resolve(dict(out=10, stride=stride, pooling_r=4, norm_eps=1e-3))).eval()
    _randomise_norms(m)
    x = torch.randn(2, 6, 8, 8)

    def k(unit, y, s=1):
        return _bn(F.conv2d(y, unit.conv.weight, stride=s, padding=1), unit.norm)

    x1, x2 = x[:, :3], x[:, 3:]
    t1 = F.avg_pool2d(x1, 4)
    up = k(m.k2, t1).repeat_interleave(4, 2).repeat_interleave(4, 3)
    y1 = k(m.k4, k(m.k3, x1) * torch.sigmoid(x1 + up), stride)
    y2 = k(m.k1, x2, stride)
    expected = torch.relu(torch.cat([y1, y2], 1))
    with torch.no_grad():
        torch.testing.assert_close(m(x), expected, rtol=1e-5, atol=1e-5)
    assert m.k4.norm.eps == 1e-3


@pytest.mark.parametrize("act", ["relu", "none"])
def test_strip_pooling_is_the_papers_equations(act):
    """y_h[c, i] = conv1d_k(mean_j x[c, i, j]), y_v[c, j] = conv1d_k(mean_i x[c, i, j]) (each with its BN);
    z = x * sigmoid(W f(y_h[c, i] + y_v[c, j]) + b), f = ReLU (SPNet's code) or none (the paper)."""
    spec = get_block("strip_pool")
    torch.manual_seed(0)
    m = spec.module(4, **spec.resolve(dict(mid_ratio=1.5, kernel=3, act=act))).eval()
    _randomise_norms(m)
    x = torch.randn(2, 4, 6, 5)
    w_h = m.conv_h.conv.weight[:, :, :, 0]                 # mid x C x k, along the height
    w_v = m.conv_w.conv.weight[:, :, 0, :]                 # mid x C x k, along the width
    rows = F.conv1d(x.sum(3) / 5, w_h, padding=1)          # N x mid x H
    cols = F.conv1d(x.sum(2) / 6, w_v, padding=1)          # N x mid x W
    rows = _bn(rows.unsqueeze(3), m.conv_h.norm)[..., 0]
    cols = _bn(cols.unsqueeze(2), m.conv_w.norm)[:, :, 0]
    y = rows[:, :, :, None] + cols[:, :, None, :]
    y = torch.relu(y) if act == "relu" else y
    gate = torch.sigmoid(torch.einsum("oc,nchw->nohw", m.fuse.weight[:, :, 0, 0], y) + m.fuse.bias.view(1, -1, 1, 1))
    with torch.no_grad():
        torch.testing.assert_close(m(x), x * gate, rtol=1e-5, atol=1e-5)


# -- scripting, norm settings, errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, in_shape, params", [
    ("deform_conv", (4, 7, 7), dict(out=8, stride=2, offset_groups=2)),
    ("deform_conv", (4, 7, 7), dict(out=8, modulated=False, norm="none")),
    ("scconv", (8, 8, 8), dict(out=8, upsample="bilinear")),
    ("strip_pool", (8, 6, 5), {}),
])
def test_scriptable(name, in_shape, params):
    spec = get_block(name)
    torch.manual_seed(0)
    module = spec.module(in_shape[0], **spec.resolve(params)).eval()
    x = torch.randn(2, *in_shape)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(module)(x), module(x))


@pytest.mark.parametrize("name, in_shapes, params, error, fragments", [
    ("deform_conv", [(6, 8, 8)], dict(out=8, groups=4), ShapeError, ["'groups' is 4", "(6)", "'out' (8)"]),
    ("deform_conv", [(6, 8, 8)], dict(out=8, offset_groups=4), ShapeError, ["'offset_groups' is 4", "(6)"]),
    ("deform_conv", [(6, 8, 8)], dict(out=8, offset_groups=0), ParamError, ["offset_groups", "got 0"]),
    ("deform_conv", [(6,)], dict(out=8), ShapeError, ["feature map"]),
    ("scconv", [(8, 3, 3)], dict(out=8), ShapeError, ["'pooling_r' is 4", "8x3x3"]),
    ("scconv", [(1, 8, 8)], dict(out=8), ShapeError, ["at least 2 input channels", "got 1 in"]),
    ("scconv", [(8, 8, 8)], dict(out=1), ShapeError, ["out=1"]),
    ("scconv", [(8, 8, 8)], dict(out=8, upsample="bicubic"), ParamError, ["upsample", "bicubic", "nearest"]),
    ("strip_pool", [(8, 8, 8)], dict(kernel=4), ParamError, ["kernel", "got 4", "one of"]),
    ("strip_pool", [(8, 8, 8)], dict(mid_ratio=0), ParamError, ["mid_ratio", "got 0"]),
])
def test_bad_input_names_the_parameter(name, in_shapes, params, error, fragments):
    spec = get_block(name)
    with pytest.raises(error) as info:
        inference_of(spec, in_shapes, spec.resolve(params))
    assert isinstance(info.value, NascoreError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_modules_refuse_channels_their_groups_do_not_divide():
    with pytest.raises(ShapeError, match="'offset_groups' is 3"):
        context.DeformConv2d(4, 6, offset_groups=3)
    with pytest.raises(ShapeError, match="'groups' is 4"):
        get_block("deform_conv").module(6, **get_block("deform_conv").resolve(dict(out=8, groups=4)))


# -- the macro space ---------------------------------------------------------------------------------------------------

MACRO = SearchSpace.load(ROOT / "search_spaces" / "macro.yaml")


@pytest.mark.parametrize("stage1, stage2, stage3, context", [
    ("deform_conv", "scconv", "deform_conv", "strip_pool"),
    ("scconv", "deform_conv", "scconv", "strip_pool"),
    ("scconv", "scconv", "resnet_basic", "identity"),
])
def test_macro_space_offers_the_blocks(stage1, stage2, stage3, context):
    params = {"stage1/block": stage1, "stage2/block": stage2, "stage3/block": stage3, "context2/block": context,
              "context3/block": context, "stage1/repeat": 2, "stage2/repeat": 1, "stage3/repeat": 2,
              "stage1/deform_conv/modulated": True, "stage2/deform_conv/modulated": False,
              "stage3/deform_conv/modulated": True, "stage1/scconv/pooling_r": 4, "stage2/scconv/pooling_r": 4,
              "stage3/resnet_basic/se_ratio": 0.25}
    graph = MACRO.fixed(params)
    analysis = graph.analyse()
    assert list(analysis.outputs.values()) == [(10,)]
    model = graph.build().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert analysis.params == sum(p.numel() for p in model.parameters())


def test_macro_space_keeps_the_other_options_first():
    choices = dict(MACRO.describe())
    for stage in ("stage1", "stage2", "stage3"):
        assert choices[f"{stage}/block"].index("resnet_basic") < choices[f"{stage}/block"].index("deform_conv")
    assert "context2/block" in choices and "context3/block" in choices
