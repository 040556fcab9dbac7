"""The batches a proxy scores with: a seeded draw from one split of a data set, normalised as the trainer does."""

from __future__ import annotations

import torch

from nascore.errors import EvaluatorError
from nascore.training.data import Splits
from nascore.training.trainer import _as_tensors

Batch = tuple[torch.Tensor, torch.Tensor]   # (x float32 (N, C, H, W), y int64 (N,)) on the scoring device


def draw_batches(splits: Splits, batch_size: int = 64, batches: int = 1, seed: int = 0, split: str = "train",
                 device: str | torch.device = "cpu") -> list[Batch]:
    """``batches`` disjoint batches of ``batch_size`` samples of ``split``, drawn without replacement by ``seed``.

    The same seed gives the same batches for every architecture, which is what ranking candidates needs (a proxy
    seeded per trial would score each candidate on other data). Inputs are normalised like the trainer's,
    ``(x * scale - mean) / std``, with no augmentation.
    """
    where = f"dataset {splits.name!r}, split {split!r}" if splits.name else f"split {split!r}"
    x, y, scale = _as_tensors(getattr(splits, split), where)
    wanted = batch_size * batches
    if wanted > len(y):
        raise EvaluatorError(f"batch_size {batch_size} x batches {batches} = {wanted} samples, but the split has "
                             f"{len(y)}; expected at most that many", where=where)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(int(seed)))[:wanted]
    c = x.shape[1]
    mean = torch.tensor(splits.mean, dtype=torch.float32).view(1, c, 1, 1)
    std = torch.tensor(splits.std, dtype=torch.float32).view(1, c, 1, 1)
    chosen = (x[order].to(torch.float32) * scale - mean) / std
    labels = y[order]
    return [(chosen[i:i + batch_size].to(device), labels[i:i + batch_size].to(device))
            for i in range(0, wanted, batch_size)]
