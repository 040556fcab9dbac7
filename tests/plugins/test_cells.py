"""Cell blocks: predictions equal the built modules, known parameter counts of whole NAS-Bench-201 and DARTS
networks, genotype validation, and NAS-Bench-201 canonicalisation over the full 15625-cell space."""

from __future__ import annotations

import itertools

import pytest
import torch

from nascore.blocks.registry import get_block
from nascore.errors import ParamError, ShapeError
from nascore.blocks.layers import DropPath
from nascore.blocks.testing import check_block
from nascore_plugins import cells

BRIEF = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_C3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
ALL_C1 = ALL_C3.replace("3x3", "1x1")
RESNET = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
EMPTY = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_DARTS_OPS = ("none:0,max_pool_3x3:1|avg_pool_3x3:0,skip_connect:1|sep_conv_3x3:2,sep_conv_5x5:1|"
                 "sep_conv_7x7:0,dil_conv_3x3:3|dil_conv_5x5:4,conv_7x1_1x7:1")


def _relu_conv_bn(c_in, c_out, k):
    return c_in * c_out * k * k + 2 * c_out


def _sep(c, k):  # DARTS SepConv: twice depthwise k x k, pointwise, BN
    return 2 * (c * k * k + c * c + 2 * c)


def _dil(c, k):
    return c * k * k + c * c + 2 * c


CASES = [
    ("nb201_cell", [(16, 32, 32)], dict(genotype=BRIEF), 3 * _relu_conv_bn(16, 16, 3)),
    ("nb201_cell", [(16, 32, 32)], dict(genotype=ALL_C3), 6 * _relu_conv_bn(16, 16, 3)),
    ("nb201_cell", [(32, 16, 16)], dict(genotype=ALL_C1), 6 * _relu_conv_bn(32, 32, 1)),
    ("nb201_cell", [(64, 8, 8)], dict(genotype=RESNET), 2 * _relu_conv_bn(64, 64, 3)),
    ("nb201_cell", [(8, 5, 5)], dict(genotype=EMPTY), 0),
    # ResNetBasicblock(16, 32, 2): two ReLU-Conv-BN 3x3 and avg-pool + bias-free 1x1 conv
    ("nb201_reduction", [(16, 32, 32)], dict(out=32), _relu_conv_bn(16, 32, 3) + _relu_conv_bn(32, 32, 3) + 16 * 32),
    ("nb201_reduction", [(16, 32, 32)], dict(out=32, stride=1),
     _relu_conv_bn(16, 32, 3) + _relu_conv_bn(32, 32, 3) + _relu_conv_bn(16, 32, 1)),
    ("nb201_reduction", [(16, 9, 9)], dict(out=16, stride=1, drop_path=0.1), 2 * _relu_conv_bn(16, 16, 3)),
    # DARTS V2 normal cell, C=36 after the stem: 2 preprocess, 5 sep_conv_3x3, 1 dil_conv_3x3, 2 skips
    ("darts_cell", [(36, 32, 32), (36, 32, 32)], dict(out=36),
     2 * _relu_conv_bn(36, 36, 1) + 5 * _sep(36, 3) + _dil(36, 3)),
    # DARTS V2 reduction cell: only preprocessing has weights (max pools and identity skips on nodes)
    ("darts_cell", [(36, 32, 32), (144, 32, 32)], dict(out=72, reduction=True),
     _relu_conv_bn(36, 72, 1) + _relu_conv_bn(144, 72, 1)),
    # after a reduction: s0 through a factorized reduction (two 1x1 convs to C/2 each, BN on C)
    ("darts_cell", [(144, 32, 32), (288, 16, 16)], dict(out=72, reduction_prev=True, drop_path=0.2),
     2 * 144 * 36 + 144 + _relu_conv_bn(288, 72, 1) + 5 * _sep(72, 3) + _dil(72, 3)),
    ("darts_cell", [(16, 16, 16), (16, 16, 16)], dict(out=16, genotype=ALL_DARTS_OPS),
     2 * _relu_conv_bn(16, 16, 1) + _sep(16, 3) + _sep(16, 5) + _sep(16, 7) + _dil(16, 3) + _dil(16, 5)
     + 16 * 16 * 14 + 32),
    # reduction: stride-2 skip_connect on s1 is a factorized reduction (16 * 8 * 2 + BN 32)
    ("darts_cell", [(16, 16, 16), (16, 16, 16)], dict(out=16, reduction=True, genotype=ALL_DARTS_OPS),
     2 * _relu_conv_bn(16, 16, 1) + _sep(16, 3) + _sep(16, 5) + _sep(16, 7) + _dil(16, 3) + _dil(16, 5)
     + 16 * 16 * 14 + 32 + 16 * 8 * 2 + 32),
    ("darts_cell", [(8, 6, 6), (8, 6, 6)], dict(out=4, genotype="skip_connect:0,skip_connect:1"), 2 * (8 * 4 + 8)),
]


@pytest.mark.parametrize("name, in_shapes, params, expected_params", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_prediction_matches_module(name, in_shapes, params, expected_params):
    inference = check_block(get_block(name), in_shapes, **params)
    assert inference.params == expected_params


def test_output_shapes():
    assert check_block(get_block("nb201_cell"), [(16, 32, 32)], genotype=BRIEF).outputs["out"] == (16, 32, 32)
    assert check_block(get_block("nb201_reduction"), [(16, 32, 32)], out=32).outputs["out"] == (32, 16, 16)
    darts = get_block("darts_cell")
    assert check_block(darts, [(36, 32, 32)] * 2, out=36).outputs["out"] == (144, 32, 32)
    assert check_block(darts, [(36, 32, 32), (144, 32, 32)], out=72, reduction=True).outputs["out"] == (288, 16, 16)
    assert check_block(darts, [(8, 6, 6)] * 2, out=4, genotype="skip_connect:0,skip_connect:1").outputs["out"] == \
        (4, 6, 6)


def _chain(name, shapes, **params):
    spec = get_block(name)
    return spec.infer(shapes, **spec.resolve(params))


def _nb201_network_params(genotype, C=16, N=5, classes=10):
    """NAS-Bench-201's TinyNetwork: stem, 3 stages of N cells with 2 reduction blocks, BN-ReLU, pool, linear."""
    inf = _chain("conv_bn_act", [(3, 32, 32)], out=C, act="none")
    total, shape = inf.params, inf.outputs["out"]
    for stage, width in enumerate((C, 2 * C, 4 * C)):
        if stage:
            inf = _chain("nb201_reduction", [shape], out=width)
            total, shape = total + inf.params, inf.outputs["out"]
        for _ in range(N):
            inf = _chain("nb201_cell", [shape], genotype=genotype)
            total, shape = total + inf.params, inf.outputs["out"]
    total += _chain("norm_act", [shape]).params
    return total + _chain("linear", [(shape[0],)], out=classes).params


def test_nb201_network_parameter_range():
    # the benchmark's range of 0.07M (no parametric op) to 1.53M (all nor_conv_3x3) on CIFAR-10
    assert _nb201_network_params(ALL_C3) == 1_531_546
    assert _nb201_network_params(EMPTY) == 73_306


def test_darts_v2_cifar_network_parameters():
    """NetworkCIFAR(C=36, 10 classes, 20 layers, DARTS_V2) without the auxiliary head: 3,349,342 (DARTS' log)."""
    C, layers = 36, 20
    inf = _chain("conv_bn_act", [(3, 32, 32)], out=3 * C, act="none")
    total, s0 = inf.params, inf.outputs["out"]
    s1 = s0
    c_curr, reduction_prev = C, False
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c_curr *= 2 if reduction else 1
        params = dict(out=c_curr, reduction=reduction, reduction_prev=reduction_prev)
        if i in (0, 6, 7):  # first normal, first reduction and the cell after it: also against the module
            inf = check_block(get_block("darts_cell"), [s0, s1], **params)
        else:
            inf = _chain("darts_cell", [s0, s1], **params)
        total, s0, s1 = total + inf.params, s1, inf.outputs["out"]
        reduction_prev = reduction
    assert s1 == (576, 8, 8)
    assert total + _chain("linear", [(576,)], out=10).params == 3_349_342


# -- genotype validation -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("genotype, fragment", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "expected 3 nodes"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "node 2 needs 2 edges"),
    ("|nor_conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", r"unknown operation 'nor_conv_5x5'.*did you mean"),
    ("|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "node 2: input ~2 is not an earlier node"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "input ~0 appears twice"),
    ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "not of the form 'op~input'"),
    ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "between bars"),
])
def test_nb201_genotype_errors(genotype, fragment):
    spec = get_block("nb201_cell")
    with pytest.raises(ParamError, match=fragment) as info:
        spec.infer([(8, 8, 8)], **spec.resolve(dict(genotype=genotype)))
    assert "genotype" in str(info.value)
    with pytest.raises(ParamError):
        spec.module(8, genotype=genotype)


def test_nb201_genotype_edge_order_is_free():
    shuffled = "|nor_conv_3x3~0|+|avg_pool_3x3~1|nor_conv_3x3~0|+|skip_connect~2|skip_connect~0|nor_conv_3x3~1|"
    assert cells.parse_nb201(shuffled) == cells.parse_nb201(BRIEF)
    assert cells.format_nb201(cells.parse_nb201(shuffled)) == BRIEF


@pytest.mark.parametrize("genotype, fragment", [
    ("sep_conv_3x3:0", "two 'op:input' pairs"),
    ("sep_conv_3x3:0,sep_conv_3x3:2", "node 0: input 2 is not available"),
    ("sep_conv_3x3:0,sep_conv_3x3:1|sep_conv_3x3:0,skip_connect:3", "node 1: input 3"),
    ("sep_conv_3x3:0,sep_cnv_3x3:1", r"unknown operation 'sep_cnv_3x3'.*did you mean"),
    ("sep_conv_3x3:0,sep_conv_3x3", "not of the form 'op:input'"),
])
def test_darts_genotype_errors(genotype, fragment):
    spec = get_block("darts_cell")
    with pytest.raises(ParamError, match=fragment):
        spec.infer([(8, 8, 8)] * 2, **spec.resolve(dict(out=8, genotype=genotype)))


@pytest.mark.parametrize("name, in_shapes, params, fragment", [
    ("nb201_reduction", [(16, 9, 9)], dict(out=32), "even height and width"),
    ("darts_cell", [(16, 16, 16), (16, 8, 8)], dict(out=8), "reduction_prev"),
    ("darts_cell", [(16, 16, 16), (16, 16, 16)], dict(out=8, reduction_prev=True), "twice the size"),
    ("darts_cell", [(16, 15, 15), (16, 8, 8)], dict(out=8, reduction_prev=True), "even height and width"),
    ("darts_cell", [(16, 16, 16), (16, 8, 8)], dict(out=7, reduction_prev=True), "even count, got 7"),
    ("darts_cell", [(16, 16, 16), (16,)], dict(out=8), r"\(C, H, W\)"),
    ("nb201_cell", [(16,)], dict(genotype=BRIEF), r"\(C, H, W\)"),
])
def test_shape_errors(name, in_shapes, params, fragment):
    spec = get_block(name)
    with pytest.raises(ShapeError, match=fragment):
        spec.infer(in_shapes, **spec.resolve(params))


# -- canonical forms -----------------------------------------------------------------------------------------------

ALL_NB201 = ["|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*ops)
             for ops in itertools.product(cells.NB201_OPS, repeat=6)]


def test_nb201_canonical_counts():
    """15625 genotypes. NAS-Bench-201's own key (to_unique_str(consider_zero=True)) gives the paper's 6466; the
    canonical form, which also drops zero terms from sums and flattens nested sums, leaves 4930 classes."""
    assert len(ALL_NB201) == 15625
    assert len({cells.nb201_unique_str(g) for g in ALL_NB201}) == 6466
    canonical = {g: get_block("nb201_cell").canonical({"genotype": g})["genotype"] for g in ALL_NB201}
    assert len(set(canonical.values())) == 4930
    for g, c in canonical.items():  # canonical refines NAS-Bench-201's classes, is idempotent, never adds weights
        assert cells.nb201_canonical({"genotype": c})["genotype"] == c
        assert cells.parse_nb201(c).count("none") >= cells.parse_nb201(g).count("none")


def test_nb201_canonical_examples():
    canon = get_block("nb201_cell").canonical
    # edges that cannot reach node 3 become none
    assert canon({"genotype": "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"}) == \
        {"genotype": "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"}
    # a skip_connect chain is the same wiring as reading the input directly
    a = canon({"genotype": "|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|"})
    b = canon({"genotype": "|none~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"})
    c = canon({"genotype": "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"})
    assert a == b == c == {"genotype": "|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|"}
    # other parameters pass through
    assert canon({"genotype": EMPTY, "x": 1}) == {"genotype": EMPTY, "x": 1}
    # the brief's example: x + conv(A) + B + avg(A) with A = conv(x), B = conv(x), written in its first form
    assert canon({"genotype": BRIEF})["genotype"] == \
        "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|"


def test_nb201_canonical_classes_compute_the_same():
    """For the weight-free cells (none, skip, avg pool), equal canonical forms give equal outputs."""
    spec = get_block("nb201_cell")
    x = torch.randn(1, 3, 6, 6)
    seen: dict[str, torch.Tensor] = {}
    for ops in itertools.product(("none", "skip_connect", "avg_pool_3x3"), repeat=6):
        g = cells.format_nb201(ops)
        y = spec.module(3, genotype=g).eval()(x)
        c = spec.canonical({"genotype": g})["genotype"]
        if c in seen:
            torch.testing.assert_close(y, seen[c])
        else:
            seen[c] = y


def test_darts_canonical():
    canon = get_block("darts_cell").canonical
    assert canon({"out": 16})["genotype"] == \
        "sep_conv_3x3:0,sep_conv_3x3:1|sep_conv_3x3:0,sep_conv_3x3:1|skip_connect:0,sep_conv_3x3:1|" \
        "skip_connect:0,dil_conv_3x3:2"
    assert canon({"out": 16, "reduction": True})["genotype"] == \
        "max_pool_3x3:0,max_pool_3x3:1|max_pool_3x3:1,skip_connect:2|max_pool_3x3:0,skip_connect:2|" \
        "max_pool_3x3:1,skip_connect:2"


def test_genotype_kinds_use_the_cells_own_tables():
    """The search space's nb201 / darts kinds are the cells' op tables, parsers, formatters and canonical forms."""
    kinds = {spec.name: spec for spec in cells.nascore_genotypes()}
    assert kinds["nb201"].ops == cells.NB201_OPS and kinds["darts"].ops == cells.DARTS_OPS
    assert kinds["nb201"].parse is cells.parse_nb201 and kinds["darts"].format is cells.format_darts
    assert set(cells.DARTS_SEARCH_OPS) < set(cells.DARTS_OPS)
    assert kinds["nb201"].canonical(BRIEF) == cells.nb201_canonical({"genotype": BRIEF})["genotype"]
    assert kinds["darts"].canonical(ALL_DARTS_OPS) == cells.darts_canonical({"genotype": ALL_DARTS_OPS})["genotype"]
    assert kinds["darts"].parse(ALL_DARTS_OPS) == cells.parse_darts(ALL_DARTS_OPS)


# -- modules -------------------------------------------------------------------------------------------------------


def test_reference_state_dict_keys():
    """NAS-Bench-201's and DARTS' keys, so published weights load."""
    keys = set(get_block("nb201_cell").module(8, genotype=BRIEF).state_dict())
    assert {"layers.0.op.1.weight", "layers.1.op.2.running_var", "layers.4.op.1.weight"} <= keys
    keys = set(get_block("nb201_reduction").module(8, out=16, stride=2, drop_path=0.0).state_dict())
    assert {"conv_a.op.1.weight", "conv_b.op.2.weight", "downsample.1.weight"} <= keys
    spec = get_block("darts_cell")
    keys = set(spec.module([8, 16], **spec.resolve(dict(out=8, reduction_prev=True))).state_dict())
    assert {"preprocess0.conv_1.weight", "preprocess0.bn.weight", "preprocess1.op.1.weight", "_ops.0.op.1.weight",
            "_ops.7.op.2.weight"} <= keys


def test_darts_drop_path_spares_identity():
    spec = get_block("darts_cell")
    module = spec.module([8, 8], **spec.resolve(dict(out=8, drop_path=0.3)))
    assert module._droppable == [True, True, True, True, True, False, False, True]  # DARTS V2's two skips
    drops = [m for m in module.modules() if isinstance(m, DropPath)]
    assert len(drops) == 1 and drops[0].drop_prob == pytest.approx(0.3)
    module.train()
    drops[0].drop_prob = 0.999  # a trainer schedules it: nearly every non-identity path is dropped
    torch.manual_seed(0)
    y = module([torch.randn(4, 8, 6, 6), torch.randn(4, 8, 6, 6)])
    assert y.shape == (4, 32, 6, 6)


def test_nb201_zero_cell_outputs_zeros():
    y = get_block("nb201_cell").module(4, genotype=EMPTY)(torch.randn(2, 4, 5, 5))
    assert y.shape == (2, 4, 5, 5) and not y.any()


@pytest.mark.parametrize("name, in_shapes, params", [
    ("nb201_cell", [(8, 8, 8)], dict(genotype=BRIEF)),
    ("nb201_reduction", [(8, 8, 8)], dict(out=16, drop_path=0.1)),
    ("darts_cell", [(16, 8, 8), (8, 4, 4)], dict(out=8, reduction_prev=True, drop_path=0.2)),
    ("darts_cell", [(8, 8, 8), (8, 8, 8)], dict(out=8, reduction=True, genotype=ALL_DARTS_OPS)),
])
def test_torchscript(name, in_shapes, params):
    spec = get_block(name)
    module = spec.module(spec.in_channels(in_shapes), **spec.resolve(params)).eval()
    scripted = torch.jit.script(module)
    xs = [torch.randn(2, *s) for s in in_shapes]
    arg = xs[0] if spec.arity.single else xs
    torch.testing.assert_close(scripted(arg), module(arg))
    scripted.train()
    assert scripted(arg).shape == module(arg).shape
