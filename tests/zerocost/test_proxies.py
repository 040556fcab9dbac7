"""Each proxy against a hand computation or the paper's definition on a network small enough to check; invariance
to the order of samples and batches where the definition has it; NaN / inf scores fail the trial; any built graph
(Resize wrapper, several outputs, no ReLU) is scored."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from nascore.errors import EvaluatorError, TrialFailed
from nascore.graph.document import graph_from_dict
from nascore.nas.space import SearchSpace
from nascore.oneshot.paths import sample_path, uniform_rule
from nascore.training.data import load_dataset
from nascore.training.trainer import Resize
from nascore.zerocost import PROXIES, draw_batches, score
from nascore.zerocost.proxies import fisher, grad_norm, jacov, naswot, snip, synflow, zico
from tests.conftest import GRAPHS, SPACES

torch.set_num_threads(1)


def linear(weight, bias=None) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return layer


def one(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


W = [[0.5, -1.0], [2.0, 0.25]]


def ce_grad(w, x, y):
    """dCE/dW of z = W x for one sample by hand: (softmax(z) - e_y) x^T."""
    w, x = np.array(w, dtype=np.float64), np.array(x, dtype=np.float64)
    z = w @ x
    p = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    p[y] -= 1
    return np.outer(p, x), z, p


@pytest.fixture(scope="module")
def mbconv():
    """A sampled mbconv-space network (SiLU, batch norm, SE, dropout) and two digits batches."""
    graph, _ = sample_path(SearchSpace.load(SPACES / "mbconv.yaml"), uniform_rule(0, 3))
    torch.manual_seed(0)
    return graph, graph.build(), draw_batches(load_dataset("digits", None), 32, 2, seed=0)


# -- hand computations -------------------------------------------------------------------------------------------------


def test_synflow_of_a_bias_free_chain_is_depth_times_the_path_sum():
    torch.manual_seed(0)
    w1, w2 = torch.randn(4, 3), torch.randn(2, 4)
    r = float((w2.abs().double() @ w1.abs().double() @ torch.ones(3, dtype=torch.float64)).sum())
    batch = [(torch.randn(5, 3), torch.zeros(5, dtype=torch.long))]
    assert synflow(nn.Sequential(linear(w1), linear(w2)), batch) == pytest.approx(2 * r, rel=1e-12)
    # positive weights and a positive input: the ReLU passes everything, the score is the same
    assert synflow(nn.Sequential(linear(w1), nn.ReLU(), linear(w2)), batch) == pytest.approx(2 * r, rel=1e-12)


def test_synflow_runs_in_float64_so_a_deep_net_does_not_overflow():
    layers = [nn.Linear(32, 32, bias=False) for _ in range(40)]
    for layer in layers:
        nn.init.constant_(layer.weight, -0.5)                  # |w| 1 = 16 per unit and layer
    batch = [(torch.zeros(2, 32), torch.zeros(2, dtype=torch.long))]
    value = score("synflow", nn.Sequential(*layers), batch)
    assert value == 40 * 32 * 16.0 ** 40 and value > torch.finfo(torch.float32).max   # exact: powers of two


def test_synflow_is_data_free(mbconv):
    graph, model, batches = mbconv
    other = [(torch.randn_like(batches[1][0]), batches[1][1])]
    assert score("synflow", model, batches) == score("synflow", model, other)


def test_naswot_is_the_logdet_of_the_hamming_kernel():
    # codes of the three samples: (1,0,0), (0,1,0), (1,1,1) -> K = [[3,1,1],[1,3,1],[1,1,3]], det 20
    batch = [one([[1, -1], [-1, 1], [1, 1]], [0, 1, 2])]
    w = [[1, 0], [0, 1], [1, 1]]
    assert naswot(nn.Sequential(linear(w), nn.ReLU()), batch) == pytest.approx(math.log(20), rel=1e-12)
    # a smooth rectifier: the unit is on where its input is positive, the same codes
    assert naswot(nn.Sequential(linear(w), nn.SiLU()), batch) == pytest.approx(math.log(20), rel=1e-12)
    # two batches: the mean of their scores
    second = one([[1, -1], [-1, 1]], [0, 1])                   # K = [[3,1],[1,3]], det 8
    assert naswot(nn.Sequential(linear(w), nn.ReLU()), [batch[0], second]) == pytest.approx(
        (math.log(20) + math.log(8)) / 2, rel=1e-12)


def test_naswot_without_a_rectifier_refuses_and_identical_codes_fail_the_trial():
    batch = [one([[1, -1], [-1, 1]], [0, 1])]
    with pytest.raises(TrialFailed, match="has none") as err:
        score("naswot", nn.Sequential(linear(W), nn.Sigmoid()), batch)
    assert err.value.reason == "unscorable"
    with pytest.raises(TrialFailed, match="naswot score is -inf") as err:   # two samples, one code: det 0
        score("naswot", nn.Sequential(linear(W), nn.ReLU()), [one([[1, 1], [2, 2]], [0, 1])])
    assert err.value.reason == "non-finite"


def test_grad_norm_and_snip_are_the_gradient_formulas():
    x1, x2 = [1.0, -2.0], [0.5, 3.0]
    g1, _, _ = ce_grad(W, x1, 1)
    g2, _, _ = ce_grad(W, x2, 0)
    b1, b2 = one([x1], [1]), one([x2], [0])
    assert grad_norm(nn.Sequential(linear(W)), [b1]) == pytest.approx(np.linalg.norm(g1), rel=1e-6)
    assert snip(nn.Sequential(linear(W)), [b1]) == pytest.approx(np.abs(np.array(W) * g1).sum(), rel=1e-6)
    mean = (g1 + g2) / 2                                        # L: the mean of the batches' losses
    assert grad_norm(nn.Sequential(linear(W)), [b1, b2]) == pytest.approx(np.linalg.norm(mean), rel=1e-6)
    assert grad_norm(nn.Sequential(linear(W)), [one([x1, x2], [1, 0])]) == pytest.approx(np.linalg.norm(mean),
                                                                                            rel=1e-6)


def test_fisher_of_a_linear_layer_by_hand():
    xs, ys = [[1.0, -2.0], [0.5, 3.0]], [1, 0]
    expected = np.zeros(2)
    for x, y in zip(xs, ys):
        _, z, p = ce_grad(W, x, y)
        expected += (z * p / 2) ** 2                            # dL/dz of the batch mean: (p - e_y) / N
    expected = 0.5 * expected / 2                               # 0.5 * mean over samples, per channel
    assert fisher(nn.Sequential(linear(W)), [one(xs, ys)]) == pytest.approx(expected.sum(), rel=1e-6)


def test_fisher_reads_a_conv_output_before_an_in_place_activation():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 12, 3, padding=1)
    model = nn.Sequential(conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    x, y = torch.randn(4, 1, 5, 5), torch.tensor([0, 3, 7, 11])
    a = F.conv2d(x, conv.weight.detach(), conv.bias.detach(), padding=1).requires_grad_(True)
    F.cross_entropy(F.relu(a).mean((2, 3)), y).backward()       # the definition: a, dL/da, per channel
    expected = 0.5 * ((a.detach() * a.grad).sum((2, 3)) ** 2).mean(0).sum()
    assert fisher(model, [(x, y)]) == pytest.approx(float(expected), rel=1e-5)


def test_jacov_of_a_linear_net_has_one_nonzero_eigenvalue():
    # every sample's Jacobian is W^T 1: the correlation matrix is all ones, eigenvalues N and N - 1 zeros
    k, n = 1e-5, 4
    batch = [(torch.randn(n, 3), torch.zeros(n, dtype=torch.long))]
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert jacov(nn.Sequential(linear([[1.0, 2.0, -3.0], [0.5, 0.0, 1.0]])), batch) == pytest.approx(expected,
                                                                                                     rel=1e-6)


def test_jacov_matches_per_sample_jacobians():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 5))
    x = torch.randn(8, 6)
    jac = np.stack([torch.autograd.functional.jacobian(lambda v: model(v[None]).sum(), x[i]).numpy()
                    for i in range(len(x))])
    eig = np.clip(np.linalg.eigvalsh(np.corrcoef(jac.astype(np.float64))), 0, None)
    expected = -np.sum(np.log(eig + 1e-5) + 1 / (eig + 1e-5))
    assert jacov(model, [(x, torch.zeros(8, dtype=torch.long))]) == pytest.approx(expected, rel=1e-4)


def test_zico_is_the_log_of_mean_abs_over_std_of_gradients():
    x1, x2 = [1.0, -2.0], [0.5, 3.0]
    g = np.stack([ce_grad(W, x1, 1)[0], ce_grad(W, x2, 0)[0]])
    std = g.std(0)                                              # population standard deviation, as the paper's code
    expected = math.log((np.abs(g).mean(0)[std != 0] / std[std != 0]).sum())
    assert zico(nn.Sequential(linear(W)), [one([x1], [1]), one([x2], [0])]) == pytest.approx(expected, rel=1e-6)
    # one batch: its two halves are the two gradient samples
    assert zico(nn.Sequential(linear(W)), [one([x1, x2], [1, 0])]) == pytest.approx(expected, rel=1e-6)


def test_params_and_macs_are_exact(mbconv):
    assert score("params", nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))) == 3 * 4 + 4 + 4 * 2 + 2
    graph, model, _ = mbconv
    analysis = graph.analyse()
    assert score("params", model) == analysis.params and score("macs", model, graph=graph) == analysis.macs
    with pytest.raises(EvaluatorError, match="without its graph"):
        score("macs", model)


# -- invariances and determinism ---------------------------------------------------------------------------------------


def _shuffled(batch, seed):
    order = torch.randperm(len(batch[1]), generator=torch.Generator().manual_seed(seed))
    return batch[0][order], batch[1][order]


@pytest.mark.parametrize("name", ["naswot", "grad_norm", "snip", "fisher", "jacov"])
def test_invariant_to_the_order_of_samples(mbconv, name):
    _, model, batches = mbconv
    assert score(name, model, [_shuffled(batches[0], 1)]) == pytest.approx(score(name, model, batches[:1]),
                                                                          rel=1e-4)


def test_zico_and_grad_norm_are_invariant_to_the_order_of_batches_and_samples(mbconv):
    _, model, batches = mbconv
    reordered = [_shuffled(batches[1], 2), _shuffled(batches[0], 3)]
    for name in ("zico", "grad_norm"):
        assert score(name, model, reordered) == pytest.approx(score(name, model, batches), rel=1e-4)


def test_scores_are_deterministic_and_the_batches_seeded(mbconv):
    graph, model, batches = mbconv
    for name in PROXIES:
        assert score(name, model, batches, graph) == score(name, model, batches, graph)
    splits = load_dataset("digits", None)
    same, other = draw_batches(splits, 16, 2, seed=0), draw_batches(splits, 16, 2, seed=1)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(same, draw_batches(splits, 16, 2, seed=0)))
    assert not torch.equal(same[0][0], other[0][0])
    assert len(torch.cat([y for _, y in same])) == 32 and same[0][0].dtype == torch.float32
    with pytest.raises(EvaluatorError, match="at most that many"):
        draw_batches(splits, 1000, 2)


# -- failures and unusual graphs --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["synflow", "grad_norm", "snip", "fisher", "jacov", "zico"])
def test_a_nan_score_fails_the_trial_with_its_reason(name):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    with pytest.raises(TrialFailed, match=f"the {name} score is nan") as err:
        score(name, model, [(torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2]))])
    assert err.value.reason == "non-finite"


def test_unknown_proxy_and_too_few_logits_are_clear_errors():
    with pytest.raises(EvaluatorError, match="did you mean 'synflow'"):
        score("synflow2", nn.Linear(2, 2), [one([[1, 2]], [0])])
    with pytest.raises(TrialFailed, match=r"K >= 10"):
        score("grad_norm", nn.Linear(2, 3), [one([[1, 2]], [9])])


def test_a_resize_wrapped_model_is_scored(mbconv):
    graph, model, batches = mbconv
    doc = graph.to_dict()
    doc["input"] = [1, 16, 16]
    big = graph_from_dict(doc, "resized")
    wrapped = Resize(big.build(), (16, 16))
    for name in PROXIES:
        assert math.isfinite(score(name, wrapped, batches, big))


def test_several_outputs_sum_their_losses():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(linear(W), nn.ReLU(), linear([[1.0, -1.0], [0.5, 2.0], [1.0, 1.0]]))

        def forward(self, x):
            out = self.body(x)
            return out, {"again": out}

    twice = Twice()
    batch = [one([[1.0, -2.0], [0.5, 3.0], [2.0, 1.0]], [0, 2, 1])]
    for name in ("grad_norm", "snip"):                         # linear in the loss: twice the loss, twice the score
        assert score(name, twice, batch) == pytest.approx(2 * score(name, twice.body, batch), rel=1e-6)
    assert score("synflow", twice, batch) == pytest.approx(2 * score("synflow", twice.body, batch), rel=1e-12)


def test_a_multi_output_zoo_graph_is_scored_by_every_proxy():
    from nascore.graph.core import Graph

    graph = Graph.load(GRAPHS / "resnet18_fpn_pan.yaml").scale(resolution=32)
    torch.manual_seed(0)
    model = graph.build()
    batches = [(torch.randn(4, *graph.input_shape[:1], 32, 32), torch.tensor([0, 1, 2, 3]))]
    assert len(graph.outputs) > 1
    for name in PROXIES:
        assert math.isfinite(score(name, model, batches, graph)), name
