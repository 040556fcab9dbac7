"""What a gradient-based proxy differentiates, on any built graph: the outputs' summed cross-entropy.

A graph may return one tensor or several (a tuple, a list, a dict: multi-output graphs such as a backbone with a
neck). Each output is read as class logits: a ``(N, K)`` tensor as it is, a ``(N, C, H, W)`` map averaged over its
spatial positions; the loss is the sum over outputs of their mean cross-entropy against the labels. An output with
fewer logits than the labels need cannot be scored, and the trial fails saying so.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from nascore.errors import TrialFailed


def heads(out: Any) -> list[torch.Tensor]:
    """The output tensors of a model's result, in order (nested tuples, lists and dicts flattened)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in heads(item)]
    raise TrialFailed(f"model returned a {type(out).__name__}; expected tensors", reason="unscorable")


def output_sum(out: Any) -> torch.Tensor:
    """Sum of every element of every output (synflow's R, jacov's scalar)."""
    return sum(t.sum() for t in heads(out))


def classification_loss(out: Any, y: torch.Tensor) -> torch.Tensor:
    """Sum over the outputs of the mean cross-entropy of their logits against ``y``."""
    total = None
    classes = int(y.max()) + 1
    for i, t in enumerate(heads(out)):
        logits = t.flatten(2).mean(2) if t.ndim > 2 else t
        if logits.ndim != 2 or logits.shape[1] < classes:
            raise TrialFailed(f"output {i} has shape {list(t.shape)}: expected (N, K) logits or (N, K, ...) maps "
                              f"with K >= {classes}, the labels' classes", reason="unscorable")
        loss = F.cross_entropy(logits, y)
        total = loss if total is None else total + loss
    return total
