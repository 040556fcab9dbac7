"""Zero-cost proxies: score an untrained network from a batch or two (or from no data at all), higher is better.

Every proxy is a pure function ``proxy(model, batches, graph=None) -> float`` of the model's initial weights and
the given batches (``(x, y)`` pairs, normalised, on the model's device; see :mod:`nascore.zerocost.data`), and
leaves the model exactly as it was (:func:`nascore.zerocost.scratch.scratch`). The gradient-based proxies run the
network in training mode (batch statistics, as the papers do) with dropout and drop-path off, differentiate
:func:`nascore.zerocost.loss.classification_loss` (multi-output graphs: the sum over outputs) and, following
Abdelfattah et al.'s reference code, sum over the weights of convolution and linear layers. :func:`score` runs a
proxy by name, seeded, and turns a NaN or infinite score into :class:`~nascore.errors.TrialFailed`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from nascore.errors import EvaluatorError, TrialFailed, suggest
from nascore.zerocost.data import Batch
from nascore.zerocost.loss import classification_loss, output_sum
from nascore.zerocost.scratch import channels_last, scratch

if TYPE_CHECKING:
    from nascore.graph.core import Graph

WEIGHTED: tuple[type[nn.Module], ...] = (nn.modules.conv._ConvNd, nn.Linear)

# Rectifier-like units for naswot: each is "on" exactly when its input is positive (for all of them, when its output
# is positive too). Gates (sigmoid, hard sigmoid, tanh) are not units with an on/off region and are not read.
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.CELU,
                                           nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Softplus)


def _weights(model: nn.Module) -> list[nn.Parameter]:
    return [m.weight for m in model.modules() if isinstance(m, WEIGHTED) and m.weight is not None]


def _device(model: nn.Module) -> torch.device:
    return next((t.device for t in model.parameters()), torch.device("cpu"))


def _weight_gradients(model: nn.Module, batches: Sequence[Batch]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, dL/dweight) of every conv / linear layer, L the mean over ``batches`` of the batch loss."""
    with scratch(model, train=True):
        for x, y in batches:
            (classification_loss(model(x), y) / len(batches)).backward()
        return [(w.detach(), w.grad if w.grad is not None else torch.zeros_like(w)) for w in _weights(model)]


# -- the proxies -----------------------------------------------------------------------------------------------------


def synflow(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """SynFlow [Tanaka et al., NeurIPS 2020; as a NAS proxy: Abdelfattah et al., ICLR 2021]. Data-free.

    With every weight and buffer replaced by its absolute value, the network in eval mode (batch norm as the
    positive affine map of its running statistics) and an all-ones input of one sample,
    ``R = sum(f(1))`` and ``score = sum_theta |theta * dR/dtheta|`` over conv / linear weights. For a bias-free
    chain of L linear layers ``R = 1^T |W_L| ... |W_1| 1`` and the score is ``L * R`` (synaptic-flow conservation).
    Computed in float64, so deep networks do not overflow; only the batches' input shape is used.
    """
    shape = tuple(batches[0][0].shape[1:])
    with scratch(model, train=False, dtype=torch.float64, absolute=True):
        out = model(torch.ones((1, *shape), dtype=torch.float64, device=_device(model)))
        output_sum(out).backward()
        return sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(model) if w.grad is not None)


def naswot(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """NASWOT [Mellor et al., ICML 2021]: ``log |det K_H|`` of the binary activation codes of a batch.

    Each sample's code ``c_i`` has one bit per unit of every rectifier-like activation module (``RECTIFIERS``:
    ReLU and its relatives SiLU, GELU, Hardswish, Mish, ELU, ...): 1 where the unit's input is positive. For ReLU
    this is exactly the paper's code; for smooth rectifiers it is the same "unit on" test. ``K_H[i, j] = N_A -
    d_H(c_i, c_j)``, the number of units on which two samples agree. Averaged over batches; invariant to the order of
    the samples (``P K P^T`` has the same determinant). A network with no such module (only linear layers and gates)
    fails the trial; activations called as functions inside a block's ``forward`` are not seen.
    """
    units = [m for m in model.modules() if isinstance(m, RECTIFIERS)]
    if not units:
        raise TrialFailed("naswot reads the on/off codes of rectifier-like activation modules (ReLU, SiLU, GELU, "
                          "Hardswish, ...); the network has none", reason="unscorable")
    scores = []
    with scratch(model, train=True), torch.no_grad():
        for x, _ in batches:
            kernel = torch.zeros(len(x), len(x), dtype=torch.float64, device=x.device)

            def record(module, args, kernel=kernel):
                on = (args[0] > 0).flatten(1)
                exact = torch.float32 if on.shape[1] < 2 ** 24 else torch.float64   # integer sums stay exact
                s = on.to(exact) * 2 - 1                                  # +1 on, -1 off
                kernel += ((s @ s.T).to(torch.float64) + s.shape[1]) / 2  # agreements: (N_A + s_i . s_j) / 2
            handles = [m.register_forward_pre_hook(record) for m in units]
            try:
                model(x)
            finally:
                for h in handles:
                    h.remove()
            scores.append(float(torch.linalg.slogdet(kernel)[1]))
    return sum(scores) / len(scores)


def grad_norm(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """grad_norm [Abdelfattah et al., ICLR 2021]: ``sum_layers ||dL/dW||_2`` over conv / linear weights.

    ``L``: the mean over batches of the batch's cross-entropy (invariant to the order of samples and batches).
    """
    return sum(float(g.norm()) for _, g in _weight_gradients(model, batches))


def snip(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """SNIP [Lee et al., ICLR 2019; as a NAS proxy: Abdelfattah et al., ICLR 2021]: ``sum |W * dL/dW|``.

    The connection sensitivity summed over every conv / linear weight; ``L`` as in :func:`grad_norm`.
    """
    return sum(float((w * g).abs().sum()) for w, g in _weight_gradients(model, batches))


def fisher(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """Fisher [Theis et al. 2018, Turner et al. 2020; as a NAS proxy: Abdelfattah et al., ICLR 2021].

    For the output ``a`` of every conv / linear layer and ``g = dL/da``: per channel
    ``0.5 * mean_n (sum_spatial a * g)^2``, summed over channels and layers, averaged over batches (``L`` the
    batch's cross-entropy).
    """
    layers = [m for m in model.modules() if isinstance(m, WEIGHTED)]
    scores = []
    with scratch(model, train=True):
        for x, y in batches:
            total = []

            def capture(module, args, out):
                def on_grad(grad, act=out):
                    g = act * grad
                    g = g.flatten(2).sum(2) if g.ndim > 2 else g
                    total.append(float(g.pow(2).mean(0).sum()) * 0.5)
                out.register_hook(on_grad)
                return out.clone()         # later in-place ops (ReLU(inplace=True)) change the clone, not ``a``
            handles = [m.register_forward_hook(capture) for m in layers]
            try:
                classification_loss(model(x), y).backward()
            finally:
                for h in handles:
                    h.remove()
            scores.append(sum(total))
    return sum(scores) / len(scores)


def jacov(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """Jacobian covariance [Mellor et al., 2020, arXiv:2006.04647v1; Abdelfattah et al., ICLR 2021].

    ``J``: per sample, the gradient of the sum of the outputs with respect to that sample's input, flattened;
    ``C = corrcoef(J)`` (samples x samples), eigenvalues ``l`` (float64, rounding negatives clamped to 0),
    ``score = -sum(log(l + k) + 1 / (l + k))`` with ``k = 1e-5``. Averaged over batches; invariant to the order of
    the samples (a permutation of ``C`` keeps its eigenvalues). A sample whose Jacobian is constant makes ``C``
    undefined and fails the trial.
    """
    k = 1e-5
    scores = []
    with scratch(model, train=True):
        for x, _ in batches:
            x = x.detach().clone().requires_grad_(True)
            (jac,) = torch.autograd.grad(output_sum(model(x)), x)
            corr = torch.corrcoef(jac.flatten(1).to(torch.float64))
            if not bool(torch.isfinite(corr).all()):
                return math.nan
            eig = torch.linalg.eigvalsh(corr).clamp(min=0)
            scores.append(-float((torch.log(eig + k) + 1 / (eig + k)).sum()))
    return sum(scores) / len(scores)


def zico(model: nn.Module, batches: Sequence[Batch], graph: Graph | None = None) -> float:
    """ZiCo [Li et al., ICLR 2023]: ``sum_layers log(sum_theta E[|g_theta|] / std(g_theta))``.

    ``g_theta``: the gradient of the cross-entropy with respect to each conv / linear weight, one sample of it per
    batch (the official code's split; with a single batch, its two halves); mean and population standard deviation
    across those samples, weights whose gradient does not vary left out, layers whose sum is 0 skipped. Invariant to
    the order of the batches and of the samples within each.
    """
    if len(batches) >= 2:
        groups = list(batches)
    else:
        x, y = batches[0]
        if len(x) < 2:
            raise EvaluatorError("zico needs two gradient samples: two batches, or one of at least 2 samples")
        half = len(x) // 2
        groups = [(x[:half], y[:half]), (x[half:], y[half:])]
    samples: list[list[torch.Tensor]] = []
    with scratch(model, train=True):
        weights = _weights(model)
        for x, y in groups:
            for w in weights:
                w.grad = None
            classification_loss(model(x), y).backward()
            samples.append([(w.grad if w.grad is not None else torch.zeros_like(w)).flatten().to(torch.float64)
                            for w in weights])
    # every layer at once: one (samples, weights) matrix, the per-weight ratios summed per layer by index_add
    g = torch.stack([torch.cat(sample) for sample in samples])
    std = g.std(0, unbiased=False)
    keep = std != 0
    ratio = torch.zeros_like(std)
    ratio[keep] = g.abs().mean(0)[keep] / std[keep]
    sizes = torch.tensor([t.numel() for t in samples[0]])
    layer = torch.repeat_interleave(torch.arange(len(sizes), device=g.device), sizes.to(g.device))
    per_layer = torch.zeros(len(sizes), dtype=g.dtype, device=g.device).index_add_(0, layer, ratio)
    return sum(math.log(r) for r in per_layer.tolist() if r != 0)


def params(model: nn.Module, batches: Sequence[Batch] = (), graph: Graph | None = None) -> float:
    """Baseline: the number of learned parameters (more is "better"). Every proxy should be compared with it
    [Li et al., ICLR 2023: earlier proxies do not beat it consistently]."""
    return float(sum(p.numel() for p in model.parameters()))


def macs(model: nn.Module, batches: Sequence[Batch] = (), graph: Graph | None = None) -> float:
    """Baseline: multiply-accumulates of one sample, from nascore's weight-free graph analysis (more is "better")."""
    if graph is None:
        raise EvaluatorError("macs reads the graph's analysis; got a model without its graph")
    return float(graph.analyse().macs)


# -- by name ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proxy:
    """A proxy by name: ``fn(model, batches, graph)``; ``data``: whether it reads batches (synflow reads only their
    shape, the baselines nothing)."""

    name: str
    fn: Callable[..., float]
    data: bool = True

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").split("\n\n")[0].replace("``", "").split())


PROXIES: dict[str, Proxy] = {p.name: p for p in (
    Proxy("synflow", synflow), Proxy("naswot", naswot), Proxy("grad_norm", grad_norm), Proxy("snip", snip),
    Proxy("fisher", fisher), Proxy("jacov", jacov), Proxy("zico", zico),
    Proxy("params", params, data=False), Proxy("macs", macs, data=False),
)}


def score(name: str, model: nn.Module, batches: Sequence[Batch] = (), graph: Graph | None = None,
          seed: int = 0) -> float:
    """The proxy ``name``'s score of ``model`` (higher is better), seeded; TrialFailed when it is NaN or infinite."""
    proxy = PROXIES.get(name)
    if proxy is None:
        raise EvaluatorError(f"unknown proxy{suggest(name, PROXIES)}; known: {', '.join(PROXIES)}",
                             where=f"proxy {name!r}")
    if proxy.data and not batches:
        raise EvaluatorError("got no batches; expected at least one (x, y) batch", where=f"proxy {name!r}")
    batches = [(channels_last(x), y) for x, y in batches]     # as scratch's weights: see its docstring
    devices = [d for d in {t.device for t in model.parameters()} if d.type == "cuda"]
    with torch.random.fork_rng(devices=devices):     # seeded, and the caller's random state left as it was
        torch.manual_seed(seed)
        value = proxy.fn(model, batches, graph)
    if not math.isfinite(value):
        raise TrialFailed(f"the {name} score is {value}: the untrained network cannot be ranked by it "
                          f"(overflowing or dead activations, or NaN weights)", reason="non-finite")
    return value
