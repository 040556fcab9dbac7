"""Batch-norm recalibration: a subnet's own statistics before it is scored.

Weights are shared by every path of a supernet, batch-norm statistics are not meaningful across paths (each path
sees other activations), so they are recomputed for each candidate on training batches before it is scored on
validation data (Single Path One-Shot; the survey: "BN can not be frozen; each path's BN statistics differ").
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Reset every batch norm's running statistics and recompute them as the plain average over ``batches``
    (momentum None), without gradients; returns the number of batches used and leaves ``model`` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, _NORMS) and m.track_running_stats]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average: every batch counts the same
    model.train()
    used = 0
    try:
        for x in batches:
            model(x)
            used += 1
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return used


__all__ = ["recalibrate_batch_norm"]
