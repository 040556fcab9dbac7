"""GhostNet's Ghost module as a nascore block: a few real feature maps, the rest made by cheap depthwise ops.

A module and a schema are all a block needs: nascore measures the module on the meta device for shapes, parameters
and MACs. The README's "Write a block plugin" adds the optional exact ``infer``: hundreds of times faster.

[GhostNet: More Features from Cheap Operations, Han et al., CVPR 2020]
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.layers import ConvNormAct


class GhostModule(nn.Module):
    def __init__(self, in_channels: int, out: int, ratio: int = 2, dw_kernel: int = 3, relu: bool = True):
        super().__init__()
        self.out = out
        primary = math.ceil(out / ratio)
        act = "relu" if relu else "none"
        self.primary = ConvNormAct(in_channels, primary, 1, act=act)
        self.cheap = ConvNormAct(primary, primary * (ratio - 1), dw_kernel, groups=primary, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary(x)
        return torch.cat([y, self.cheap(y)], 1)[:, : self.out]


GHOST = BlockSpec(
    name="ghost_module", module=GhostModule,
    params=(Param("out", int, doc="output channels", low=1, channels=True),
            Param("ratio", int, 2, "1 / fraction of channels made by real convolutions", low=2, high=8),
            Param("dw_kernel", int, 3, "kernel of the cheap depthwise operation", choices=(1, 3, 5, 7)),
            Param("relu", bool, True, "ReLU after both parts")),
    doc="Ghost module: half the feature maps from a 1x1 conv, the other half from cheap depthwise convs.",
    paper="GhostNet: More Features from Cheap Operations (Han et al. 2020)",
    examples=({"out": 32}, {"out": 30, "ratio": 3, "relu": False}),   # what `nascore blocks --check` tries
)


@hookimpl
def nascore_blocks():
    return [GHOST]
