"""Scoring leaves the model as it was: weights, batch-norm statistics, dtypes, gradients, requires_grad, train/eval
mode of every module, and the caller's random state; also when the proxy fails half-way."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from nascore.errors import TrialFailed
from nascore.nas.space import SearchSpace
from nascore.oneshot.paths import sample_path, uniform_rule
from nascore.training.data import load_dataset
from nascore.zerocost import PROXIES, draw_batches, score
from nascore.zerocost.scratch import scratch
from tests.conftest import SPACES

torch.set_num_threads(1)


def snapshot(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [(p.grad, p.requires_grad, p.data.data_ptr()) for p in model.parameters()],
            [m.training for m in model.modules()])


def assert_same(model: nn.Module, before) -> None:
    state, params, modes = before
    now = model.state_dict()
    assert now.keys() == state.keys()
    for key, value in state.items():
        assert now[key].dtype == value.dtype and torch.equal(now[key], value), key
    assert [(p.grad, p.requires_grad, p.data.data_ptr()) for p in model.parameters()] == params
    assert [m.training for m in model.modules()] == modes


@pytest.fixture(scope="module")
def sampled():
    graph, _ = sample_path(SearchSpace.load(SPACES / "mbconv.yaml"), uniform_rule(0, 5))
    return graph, draw_batches(load_dataset("digits", None), 16, 2, seed=0)


@pytest.mark.parametrize("name", list(PROXIES))
def test_scoring_changes_nothing(sampled, name):
    graph, batches = sampled
    torch.manual_seed(0)
    model = graph.build(drop_path_rate=0.2)
    model.eval()
    model.stem.train()                                           # a mix of modes
    first = next(model.parameters())
    first.requires_grad_(False)
    last = list(model.parameters())[-1]
    last.grad = torch.ones_like(last)                            # a gradient the caller had
    before, rng = snapshot(model), torch.get_rng_state()
    score(name, model, batches, graph)
    assert_same(model, before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_proxy_failing_half_way_leaves_the_model_as_it_was():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    before = snapshot(model)
    with pytest.raises(TrialFailed, match="K >= 10"):          # batch norm has run (in training mode) by then
        score("grad_norm", model, [(torch.randn(8, 1, 6, 6), torch.arange(8) + 2)])
    assert_same(model, before)


def test_scratch_gives_working_copies_in_the_requested_dtype_and_mode():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.Dropout(0.5))
    model.eval()
    original = model[0].weight.data
    with scratch(model, train=True, dtype=torch.float64, absolute=True):
        assert model[0].weight.dtype == torch.float64 and bool((model[0].weight >= 0).all())
        assert model[0].weight.data.data_ptr() != original.data_ptr() and model[1].running_var.dtype == torch.float64
        assert model.training and model[1].training and not model[2].training   # dropout stays off
    assert model[0].weight.data_ptr() == original.data_ptr() and not model.training
