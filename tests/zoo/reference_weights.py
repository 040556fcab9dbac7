"""Deterministic weights that do not depend on torch's random generator, for comparing nascore's zoo graphs with
torchvision's models across torch versions (benchmarks/make_torchvision_reference.py writes the reference outputs
with them under torchvision's torch; tests/zoo/test_torchvision_reference.py recomputes them under the pinned torch).

Every value comes from integer arithmetic on the tensor's torchvision name and the element index, so both sides get
bit-identical tensors. Scales keep a deep network's activations finite: convolution and linear weights have variance
2 / fan_in, batch-norm running variances lie in [0.05, 1.05] (so eps 1e-3 against 1e-5 changes outputs by percents).
"""

from __future__ import annotations

import math
import zlib

import torch

_P = 2_147_483_647   # 2^31 - 1: every product below stays inside int64


def uniform(key: str, n: int) -> torch.Tensor:
    """``n`` float64 values in [0, 1), a pure function of ``key`` and the index."""
    x = torch.arange(n, dtype=torch.int64)
    x = (x * 48_271 + zlib.crc32(key.encode())) % _P
    x = (x * x + 12_345) % _P
    x = (x * 16_807 + 1) % _P
    return x.to(torch.float64) / _P


def reference_tensor(key: str, like: torch.Tensor) -> torch.Tensor:
    """The value of the tensor named ``key`` (torchvision's name) with the shape and dtype of ``like``."""
    shape = tuple(like.shape)
    if not like.is_floating_point():                    # num_batches_tracked
        return torch.zeros(shape, dtype=like.dtype)
    u = uniform(key, math.prod(shape)).reshape(shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf == "running_var":
        values = 0.05 + u
    elif leaf == "running_mean":
        values = 0.2 * (u - 0.5)
    elif leaf == "bias":
        values = 0.2 * (u - 0.5)
    elif len(shape) == 1:                               # a norm's scale
        values = 1.0 + 0.4 * (u - 0.5)
    else:                                               # convolution / linear weight: He-uniform
        values = (u - 0.5) * 2.0 * math.sqrt(6.0 / math.prod(shape[1:]))
    return values.to(like.dtype)


def reference_input(shape: tuple[int, ...]) -> torch.Tensor:
    """A fixed float64 input batch in [-1, 1)."""
    return (2.0 * uniform("input", math.prod(shape)) - 1.0).reshape(shape)


__all__ = ["reference_input", "reference_tensor", "uniform"]
