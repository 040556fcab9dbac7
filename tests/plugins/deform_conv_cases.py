"""Deformable-convolution cases shared by ``benchmarks/make_deform_conv_reference.py`` (which records torchvision's
results) and tests/plugins/test_context.py (which recomputes them with the pure-torch implementation).

Every tensor is a formula of its element index (Python's ``math.sin``, so no torch generator or version is involved);
offsets reach +-2.6 pixels, so samples fall between pixels, across the border and wholly outside the map.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parent / "data" / "deform_conv_reference.json"

# torchvision.ops.deform_conv2d's arguments, and the input's shape (N, C, H, W)
CASES = {
    "3x3-modulated": dict(input=(2, 4, 7, 6), out=6, kernel=(3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                          groups=1, offset_groups=1, mask=True, bias=True),
    "3x2-strided-dilated-grouped": dict(input=(2, 4, 8, 7), out=6, kernel=(3, 2), stride=(2, 1), padding=(2, 1),
                                        dilation=(2, 1), groups=2, offset_groups=2, mask=True, bias=False),
    "v1-unpadded-3-groups": dict(input=(1, 6, 5, 5), out=3, kernel=(3, 3), stride=(2, 2), padding=(0, 0),
                                 dilation=(1, 1), groups=3, offset_groups=3, mask=False, bias=True),
    "one-pixel-wide": dict(input=(1, 2, 4, 1), out=2, kernel=(3, 3), stride=(1, 1), padding=(1, 1),
                           dilation=(1, 1), groups=1, offset_groups=1, mask=True, bias=True),
}


def formula(shape: tuple[int, ...], salt: float, scale: float = 1.0, shift: float = 0.0,
            dtype: torch.dtype = torch.float64) -> torch.Tensor:
    n = math.prod(shape)
    return torch.tensor([shift + scale * math.sin(0.7548776662466927 * i + salt) for i in range(n)],
                        dtype=dtype).reshape(shape)


def output_size(case: dict) -> tuple[int, int]:
    (_, _, h, w), (kh, kw) = case["input"], case["kernel"]
    (sh, sw), (ph, pw), (dh, dw) = case["stride"], case["padding"], case["dilation"]
    return (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1


def tensors(case: dict, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor | None]:
    """The case's input, offset, mask (or None), weight, bias (or None), and the weights of its loss
    (``sum(out * loss_weights)``) and of the gradient projections."""
    n, c, _, _ = case["input"]
    kh, kw = case["kernel"]
    ho, wo = output_size(case)
    k = kh * kw * case["offset_groups"]
    out = case["out"]
    return {
        "input": formula(case["input"], 0.1, dtype=dtype),
        "offset": formula((n, 2 * k, ho, wo), 0.7, 2.6, dtype=dtype),
        "mask": formula((n, k, ho, wo), 1.3, 0.5, 0.5, dtype=dtype) if case["mask"] else None,
        "weight": formula((out, c // case["groups"], kh, kw), 2.9, 0.4, dtype=dtype),
        "bias": formula((out,), 3.7, dtype=dtype) if case["bias"] else None,
        "loss_weights": formula((n, out, ho, wo), 4.1, dtype=dtype),
    }


def projection(shape: tuple[int, ...], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The fixed direction a gradient is recorded along (one number per gradient keeps the fixture small)."""
    return formula(shape, 5.3, dtype=dtype)


def run(op, case: dict, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, dict[str, float]]:
    """``op`` (torchvision's signature) on the case: its output, and each gradient of the loss projected."""
    t = tensors(case, dtype)
    leaves = {name: v.requires_grad_() for name, v in t.items() if v is not None and name != "loss_weights"}
    out = op(t["input"], t["offset"], t["weight"], t["bias"], stride=case["stride"], padding=case["padding"],
             dilation=case["dilation"], mask=t["mask"])
    (out * t["loss_weights"]).sum().backward()
    grads = {name: float((v.grad * projection(tuple(v.shape), dtype)).sum()) for name, v in leaves.items()}
    return out.detach(), grads
