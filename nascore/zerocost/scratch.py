"""Score a model without changing it: run it on working copies of its tensors and put everything back.

A proxy switches modes, turns weights to float64 or to their absolute values (synflow), lets batch norm update its
running statistics and fills ``.grad``. :func:`scratch` swaps a private copy of every parameter and buffer into the
model for the duration (the ``Parameter`` objects stay, so an optimiser holding them is unaffected), and restores
the original tensors, gradients, ``requires_grad`` flags and every module's train/eval mode afterwards, also when the
proxy raises.

The copies of 4-D tensors (convolution weights) are channels-last: on the CPU, oneDNN's depthwise-convolution
backward is faster in that layout. With the single walk over the modules below, the gradient proxies score
mbconv networks 1.1-1.4x faster on a quiet machine (``benchmarks/bench_zerocost.py``, BENCHMARKS.md), and the
scores agree to float32 rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

# Modules that are random in training mode; a proxy runs the rest of the network in training mode (batch statistics,
# as the papers do) with these in eval mode, so a score is deterministic and a set function of the batch.
STOCHASTIC: tuple[type[nn.Module], ...] = (nn.modules.dropout._DropoutNd, nn.RReLU)


def _stochastic_types() -> tuple[type[nn.Module], ...]:
    from nascore.blocks.layers import DropPath

    return (*STOCHASTIC, DropPath)


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last layout if it is 4-D (the proxies' working copies and inputs), else ``t``."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


@contextmanager
def scratch(model: nn.Module, *, train: bool, dtype: torch.dtype | None = None,
            absolute: bool = False) -> Iterator[nn.Module]:
    """``model`` with private copies of its parameters and buffers, every parameter requiring grad and no ``.grad``.

    ``train``: training mode (batch statistics) with random modules (dropout, drop-path, RReLU) in eval mode, or eval
    mode throughout. ``dtype``: floating tensors converted to it; ``absolute``: floating tensors replaced by their
    absolute values (synflow's linearisation).
    """
    def work(t: torch.Tensor) -> torch.Tensor:
        if not t.is_floating_point():
            return t.clone()
        t = t.detach().to(dtype) if dtype is not None else t.detach()
        t = t.abs() if absolute else t.clone()
        return channels_last(t)

    # One walk over the modules, their tensors read from and put back into the modules' own dicts: the public
    # accessors (parameters(), named_buffers(), setattr) cost ~4 ms a call on a 115-module net, a fifth of synflow.
    modules = list(model.modules())
    modes = [m.training for m in modules]
    params = list({id(p): p for m in modules for p in m._parameters.values() if p is not None}.values())
    saved = [(p.data, p.grad, p.requires_grad) for p in params]
    buffers = [(m._buffers, name, b) for m in modules for name, b in m._buffers.items() if b is not None]
    try:
        with torch.enable_grad():
            for p in params:
                p.data = work(p.data)
                p.grad = None
                p.requires_grad_(True)
            for owner, name, b in buffers:
                owner[name] = work(b)
            model.train(train)                       # a module's own train() (say, frozen batch norm) is honoured
            if train:
                stochastic = _stochastic_types()
                for m in modules:
                    if isinstance(m, stochastic):
                        m.eval()
            yield model
    finally:
        for p, (data, grad, requires) in zip(params, saved):
            p.data = data
            p.grad = grad
            p.requires_grad_(requires)
        for owner, name, b in buffers:
            owner[name] = b
        for m, training in zip(modules, modes):
            m.training = training
