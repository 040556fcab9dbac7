"""An experiment, measured and not adopted: the gradient proxies with a depthwise weight gradient by shifted sums.

On the CPU, oneDNN's weight gradient of a depthwise convolution whose kernel is larger than its map (a 5x5 on the
2x2-4x4 maps of the mbconv space on digits, a 3x3 on 2x2) leaves its fast path and costs 10-100 times the forward.
PyTorch has no other CPU kernel for it (the native one is slower still, a grouped convolution with the batch as
channels 5-8x slower). Here it is computed as k*k shifted products of the output gradient with the padded input,
summed over batch and positions (``_DepthwiseConv``), and routed in only where the kernel outgrows the map.

Two figures, both single-threaded and interleaved so a busy machine slows both sides alike:

1. per convolution shape (batch 64, channels-last, as the proxies run): forward + backward of torch's depthwise
   convolution and of the routed one, median of repeats, for kernels larger and smaller than the map;
2. per gradient proxy on ``--architectures`` mbconv-space networks (digits, batch 64): each network scored with
   and without the routing, alternately; the median over networks of the time ratio.

    .venv/bin/python benchmarks/bench_depthwise.py     # writes benchmarks/results/depthwise_proxies.json

The verdict (BENCHMARKS.md): 3.4-6.6x on the layers it takes, 1.06-1.10x per network for the gradient proxies and
0.91x for jacov (which needs no weight gradient, but a custom Function cannot tell), so the proxies keep torch's
kernel and this stays an experiment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nascore.nas.space import SearchSpace  # noqa: E402
from nascore.oneshot.paths import sample_path, uniform_rule  # noqa: E402
from nascore.training.data import load_dataset  # noqa: E402
from nascore.zerocost import draw_batches, score  # noqa: E402


class _DepthwiseConv(torch.autograd.Function):
    """``F.conv2d`` with ``groups == channels``; the weight gradient by shifted sums (see the module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, dilation)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, stride, padding, dilation, x.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(grad, x, weight, None, stride, padding, dilation, False,
                                                         [0, 0], x.shape[1], [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            grad_w = _weight_grad(x, grad, weight.shape, stride, padding, dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None


def _weight_grad(x: torch.Tensor, grad: torch.Tensor, shape: torch.Size, stride: tuple[int, int],
                 padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``dL/dW[c, 0, i, j] = sum_{n,h,w} grad[n, c, h, w] * x_padded[n, c, h*sh + i*dh, w*sw + j*dw]``."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    # both channels-last: the products then run along contiguous channels (mixed layouts made them 100x slower)
    padded = F.pad(x, (pw, pw, ph, ph)).contiguous(memory_format=torch.channels_last)
    grad = grad.contiguous(memory_format=torch.channels_last)
    height, width = grad.shape[2:]
    out = grad.new_empty(shape[0], shape[2], shape[3])
    for i in range(shape[2]):
        for j in range(shape[3]):
            tap = padded[:, :, i * dh: i * dh + (height - 1) * sh + 1: sh, j * dw: j * dw + (width - 1) * sw + 1: sw]
            out[:, i, j] = (grad * tap).sum((0, 2, 3))
    return out.unsqueeze(1)


def _routable(module: nn.Module) -> bool:
    """A depthwise ``nn.Conv2d`` (one filter per channel) with numeric zero padding."""
    return (type(module) is nn.Conv2d and module.groups > 1 and module.groups == module.in_channels
            == module.out_channels and module.padding_mode == "zeros" and not isinstance(module.padding, str))


def _forward(module: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """The module's own forward, or :class:`_DepthwiseConv` in float32 on the CPU (oneDNN's case; synflow's float64
    runs torch's native kernel) when the kernel is larger than the map."""
    reach = [d * (k - 1) + 1 for d, k in zip(module.dilation, module.kernel_size)]
    if (x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 4 and torch.is_grad_enabled()
            and (reach[0] > x.shape[2] or reach[1] > x.shape[3])):
        return _DepthwiseConv.apply(x, module.weight, module.bias, module.stride, module.padding, module.dilation)
    return nn.Conv2d.forward(module, x)


@contextmanager
def small_maps_depthwise(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with its depthwise convolutions computing their weight gradient by shifted sums where the kernel
    is larger than the map, on the CPU (an instance ``forward``, removed afterwards, also when the body raises)."""
    routed = [m for m in model.modules() if _routable(m) and "forward" not in m.__dict__]
    try:
        for module in routed:
            module.forward = _forward.__get__(module)
        yield model
    finally:
        for module in routed:
            del module.forward


SHAPES = [  # (channels, side, kernel, stride): the mbconv space's depthwise layers on 8x8 digits
    (144, 8, 5, 1), (144, 4, 5, 1), (240, 4, 5, 2), (384, 2, 5, 1), (192, 2, 3, 1), (288, 4, 3, 1)]
PROXIES = ("grad_norm", "snip", "fisher", "jacov", "zico")


def _median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def per_shape(repeats: int) -> list[dict]:
    rows = []
    for channels, side, kernel, stride in SHAPES:
        x = torch.randn(64, channels, side, side).contiguous(memory_format=torch.channels_last).requires_grad_(True)
        w = torch.randn(channels, 1, kernel, kernel).contiguous(memory_format=torch.channels_last)
        w.requires_grad_(True)
        pad = kernel // 2

        def torchs():
            F.conv2d(x, w, None, stride, pad, 1, channels).sum().backward()

        def routed():
            _DepthwiseConv.apply(x, w, None, (stride, stride), (pad, pad), (1, 1)).sum().backward()

        a, b = _median_ms(torchs, repeats), _median_ms(routed, repeats)
        rows.append({"channels": channels, "side": side, "kernel": kernel, "stride": stride,
                     "kernel_larger_than_map": kernel > side, "onednn_ms": a, "routed_ms": b, "speedup": a / b})
        print(f"{channels:4d} ch {side}x{side} k{kernel} s{stride}: oneDNN {a:6.2f} ms, routed {b:6.2f} ms, x{a / b:.2f}")
    return rows


def per_proxy(architectures: int) -> list[dict]:
    space = SearchSpace.load(ROOT / "search_spaces" / "mbconv.yaml")
    batches = draw_batches(load_dataset("digits", None), 64, 1, seed=0)
    graphs = [sample_path(space, uniform_rule(1, i))[0] for i in range(architectures)]
    models = [g.build() for g in graphs]
    rows = []
    for name in PROXIES:
        ratios, plain_ms, routed_ms = [], [], []
        for graph, model in zip(graphs, models):
            timings = {}
            for routing in (False, True, False, True):        # alternated: drift hits both sides
                routed = small_maps_depthwise(model) if routing else contextlib.nullcontext()
                t0 = time.perf_counter()
                with routed:
                    score(name, model, batches, graph)
                timings.setdefault(routing, []).append(time.perf_counter() - t0)
            plain, routed = min(timings[False]), min(timings[True])
            ratios.append(plain / routed)
            plain_ms.append(plain * 1e3)
            routed_ms.append(routed * 1e3)
        row = {"proxy": name, "speedup_median": statistics.median(ratios), "speedup_min": min(ratios),
               "speedup_max": max(ratios), "onednn_ms_median": statistics.median(plain_ms),
               "routed_ms_median": statistics.median(routed_ms)}
        rows.append(row)
        print(f"{name:>10}: x{row['speedup_median']:.2f} median (x{row['speedup_min']:.2f}-x{row['speedup_max']:.2f}), "
              f"{row['onednn_ms_median']:.1f} -> {row['routed_ms_median']:.1f} ms")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architectures", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "depthwise_proxies.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    result = {"benchmark": "depthwise_proxies",
              "command": "python benchmarks/bench_depthwise.py " + " ".join(argv or sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "threads": 1, "torch": torch.__version__,
                          "load_average": os.getloadavg()},
              "shapes": per_shape(args.repeats), "proxies": per_proxy(args.architectures)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
