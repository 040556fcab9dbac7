"""The weight-sharing supernet: sharing is real, extraction gives exactly Graph.build() with inherited weights,
unshareable choices are refused by name, and path samplers are deterministic and fair."""

from __future__ import annotations

import collections

import pytest
import torch

from nascore.errors import SupernetError
from nascore.ext.manager import register_plugin, unregister_plugin
from nascore.nas.space import SearchSpace
from nascore.oneshot.paths import fair_rule, sample_path, uniform_rule
from nascore.oneshot.supernet import Supernet, slice_to
from tests.conftest import SPACES

SPACE = {
    "name": "tiny",
    "graph": {
        "input": [1, 8, 8],
        "nodes": [
            {"name": "stem", "block": "conv_bn_act", "out": 8},
            {"name": "stage", "block": "mbconv", "repeat": {"int": [1, 2]}, "out": {"choice": [8, 16]},
             "expand": {"choice": [1, 3]}, "kernel": {"choice": [3, 5]}, "se_ratio": {"choice": [0.0, 0.25]}},
            {"name": "mix", "block": {"choice": {"conv_bn_act": {"out": 16, "act": {"choice": ["relu", "silu"]}},
                                                 "resnet_basic": {"out": 16}}}},
            {"name": "gap", "block": "global_avg_pool"},
            {"name": "fc", "block": "linear", "out": 10},
        ],
    },
}


@pytest.fixture(scope="module")
def space():
    return SearchSpace(SPACE, "tiny.yaml")


@pytest.fixture(scope="module")
def supernet(space):
    return Supernet(space)


def _paths(space, n, rule=uniform_rule):
    return [sample_path(space, rule(0, step)) for step in range(n)]


def test_every_point_runs_as_its_extracted_subnet_exactly(space, supernet):
    x = torch.randn(4, 1, 8, 8)
    supernet.eval()
    for graph, _ in _paths(space, 12):
        model = supernet.subnet(graph).eval()
        assert set(model.state_dict()) == set(graph.build().state_dict())
        torch.testing.assert_close(model(x), supernet(x, graph), rtol=0, atol=0)


def test_two_points_that_share_a_choice_share_the_tensor(space, supernet):
    small = space.fixed({"stage/repeat": 1, "stage/out": 8, "stage/expand": 1, "stage/kernel": 3,
                         "stage/se_ratio": 0.0, "mix/block": "resnet_basic"})
    large = space.fixed({"stage/repeat": 2, "stage/out": 16, "stage/expand": 3, "stage/kernel": 5,
                         "stage/se_ratio": 0.25, "mix/block": "resnet_basic"})
    supernet.train()
    x = torch.randn(4, 1, 8, 8)
    before = supernet.extract(large)
    supernet.zero_grad()
    supernet(x, small).sum().backward()
    with torch.no_grad():
        for p in supernet.parameters():
            if p.grad is not None:
                p -= 0.1 * p.grad.sign()
    after = supernet.extract(large)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("stage.0.") for k in changed)      # trained through the small point
    assert not any(k.startswith("stage.1.") for k in changed)  # depth 1 never touches the second repeat
    # a 3x3 kernel is the centre of the shared 5x5; 8 channels the first 8 of 16
    big = supernet.extract(large)
    small_state = supernet.extract(small)
    for key, tensor in small_state.items():
        if key in big and tensor.dim() == 4 and tensor.shape != big[key].shape:
            torch.testing.assert_close(tensor, slice_to(big[key], tuple(tensor.shape)))


def test_a_block_choice_holds_one_set_of_weights_per_option(space, supernet):
    nodes = {entry["node"] for entry in supernet.layout()}
    assert any(n.startswith("mix (conv_bn_act") for n in nodes) and any(n.startswith("mix (resnet_basic") for n in
                                                                        nodes)


def test_kernel_sharing_separate_keeps_one_weight_per_kernel(space):
    separate = Supernet(space, kernel_sharing="separate")
    kernels = {e["node"] for e in separate.layout() if e["node"].startswith("stage.0")}
    assert any("kernel=3" in n for n in kernels) and any("kernel=5" in n for n in kernels)
    with pytest.raises(SupernetError, match="kernel_sharing"):
        Supernet(space, kernel_sharing="centre")


def test_a_genotype_kind_without_shared_slots_is_refused_naming_the_choice(fresh_plugins):
    from tests.nas.test_genotypes import ChainCellPlugin, cell_space

    name = register_plugin(ChainCellPlugin(), name="chain_cells")
    try:
        space = SearchSpace(cell_space({"genotype": "chain", "name": "act"}, block="chain_cell"))
        with pytest.raises(SupernetError, match=r"choice 'act': a chain cell genotype choice.*shared_slot"):
            Supernet(space)
    finally:
        unregister_plugin(name)


def _darts_point(space, normal):
    """The darts.yaml point whose normal cell is ``normal`` (per node two (op, input) pairs); the reduction cell
    fixed."""
    values = {}
    reduce = [[("max_pool_3x3", 0), ("sep_conv_3x3", 1)]] * 4
    for cell, nodes in (("normal", normal), ("reduce", reduce)):
        for k, node in enumerate(nodes):
            for s, (op, i) in enumerate(node):
                values[f"{cell}/node{k}/input{s}"] = i
                values[f"{cell}/node{k}/op{s}"] = op
    return space.fixed(values)


def test_darts_cells_share_one_tensor_per_edge_and_operation():
    """Every DARTS point runs exactly as its extracted subnet; the same operation on the same edge shares its
    tensor wherever the pair sits in the cell; another operation on that edge does not, except a larger kernel of
    the same kind, whose centre it is (slice sharing)."""
    space = SearchSpace.load(SPACES / "darts.yaml")
    supernet = Supernet(space).eval()
    x = torch.randn(2, 1, 8, 8)
    for graph, _ in _paths(space, 3):
        torch.testing.assert_close(supernet.subnet(graph).eval()(x), supernet(x, graph), rtol=0, atol=0)
    start = [[("skip_connect", 0), ("skip_connect", 1)], [("skip_connect", 0), ("skip_connect", 1)]]
    # node 2 reads node 1's state (input 3) through its second pair in a, its first pair in b
    a = supernet.extract(_darts_point(space, [*start, [("max_pool_3x3", 0), ("sep_conv_3x3", 3)],
                                              [("skip_connect", 0), ("skip_connect", 1)]]))
    b = supernet.extract(_darts_point(space, [*start, [("sep_conv_3x3", 3), ("sep_conv_3x3", 3)],
                                              [("skip_connect", 0), ("skip_connect", 1)]]))
    c = supernet.extract(_darts_point(space, [*start, [("max_pool_3x3", 0), ("sep_conv_5x5", 3)],
                                              [("skip_connect", 0), ("skip_connect", 1)]]))
    d = supernet.extract(_darts_point(space, [*start, [("max_pool_3x3", 0), ("dil_conv_3x3", 3)],
                                              [("skip_connect", 0), ("skip_connect", 1)]]))
    first = "cell1._ops.5.op.1.weight"          # node 2, pair 1: depthwise 3x3 of sep_conv_3x3 from input 3
    assert a[first].shape[-1] == 3 and torch.equal(a[first], b["cell1._ops.4.op.1.weight"])
    torch.testing.assert_close(a[first], slice_to(c[first], (*c[first].shape[:2], 3, 3)), rtol=0, atol=0)
    assert not torch.equal(a[first], d[first])   # dil_conv_3x3 on the same edge: weights of its own
    assert not torch.equal(b["cell1._ops.4.op.1.weight"], b["cell1._ops.5.op.1.weight"])   # read twice: two


def test_nb201_edges_hold_one_tensor_per_operation():
    """Every NAS-Bench-201 genotype runs exactly as its extracted subnet; two genotypes with the same operation on
    an edge share its tensor, different operations on that edge do not (kernel_sharing='separate')."""
    space = SearchSpace.load(SPACES / "nb201.yaml")
    supernet = Supernet(space, kernel_sharing="separate").eval()
    x = torch.randn(2, 1, 8, 8)
    for graph, _ in _paths(space, 4):
        torch.testing.assert_close(supernet.subnet(graph).eval()(x), supernet(x, graph), rtol=0, atol=0)
    ops = ["nor_conv_3x3", "nor_conv_1x1", "skip_connect", "avg_pool_3x3", "none", "nor_conv_3x3"]

    def cell(first):
        return space.fixed({f"cell/{e}": op for e, op in zip(
            ["edge_0_1", "edge_0_2", "edge_1_2", "edge_0_3", "edge_1_3", "edge_2_3"], [first, *ops[1:]])})
    a, b, c = supernet.extract(cell("nor_conv_3x3")), supernet.extract(cell("nor_conv_3x3")), \
        supernet.extract(cell("nor_conv_1x1"))
    key = "cell1.layers.0.op.1.weight"
    assert torch.equal(a[key], b[key]) and a[key].shape[-1] == 3 and c[key].shape[-1] == 1
    supernet.train()
    with torch.no_grad():
        for p in supernet.parameters():
            p.add_(0.0)
    bank = {e["tensor"] for e in supernet.layout() if e["node"].startswith("cell1")}
    assert any("layers.0.op.1.weight" in t and "(3, 3)" in t for t in bank)
    assert any("layers.0.op.1.weight" in t and "(1, 1)" in t for t in bank)


def test_paths_are_deterministic_and_fair(space):
    assert [p for _, p in _paths(space, 5)] == [p for _, p in _paths(space, 5)]
    seen = collections.Counter(p["stage/kernel"] for _, p in _paths(space, 40, fair_rule))
    assert seen == {3: 20, 5: 20}
    uniform = {p["stage/expand"] for _, p in _paths(space, 40)}
    assert uniform == {1, 3}


def test_recalibration_recomputes_a_paths_statistics_and_restores_its_accuracy(space, supernet):
    """Statistics left by other paths make a subnet wrong in eval mode; recalibration on training batches makes
    eval mode agree with the batch's own statistics again."""
    from nascore.oneshot.calibrate import recalibrate_batch_norm

    torch.manual_seed(0)
    graph = space.fixed({"stage/repeat": 2, "stage/out": 16, "stage/expand": 3, "stage/kernel": 5,
                         "stage/se_ratio": 0.25, "mix/block": "resnet_basic"})
    model = supernet.subnet(graph)
    x = torch.randn(256, 1, 8, 8) * 3 + 1
    for m in model.modules():              # statistics of some other path: wrong for this one
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-5.0, 5.0)
            m.running_var.fill_(1e-4)
    def error(out):
        return ((out - reference).norm() / reference.norm()).item()

    with torch.no_grad():
        reference = model.train()(x)      # the batch's own statistics: what calibrated statistics should reproduce
        wrong = error(model.eval()(x))
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert recalibrate_batch_norm(model, x.split(32)) == 8
    after = model.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before)
    assert not model.training
    with torch.no_grad():
        right = error(model(x))
    assert right < 0.05 < 0.5 < wrong
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))


def test_the_seed_draws_the_bank_and_leaves_the_callers_rng_alone(space):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = Supernet(space, seed=1).state_dict()
    torch.testing.assert_close(torch.rand(3), expected_next, rtol=0, atol=0)   # the global RNG is untouched
    again = Supernet(space, seed=1).state_dict()
    other = Supernet(space, seed=2).state_dict()
    weights = [k for k, v in first.items() if v.dim() >= 2]
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in weights)
