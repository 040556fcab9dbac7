"""Parameter definitions shared by the built-in blocks, so a name means the same thing everywhere."""

from __future__ import annotations

from nascore.blocks.layers import ACTIVATIONS, NORM_EPS, NORM_MOMENTUM, NORMS
from nascore.blocks.spec import REQUIRED, Param


def out(doc: str = "output channels") -> Param:
    return Param("out", int, REQUIRED, doc, low=1, high=1 << 16, channels=True)


def kernel(default: int = 3, doc: str = "kernel size") -> Param:
    """A kernel of any size: a plain chain (conv, separable, pooling) is estimated exactly with even ones too."""
    return Param("kernel", "pair", default, doc, low=1, high=31)


def odd_kernel(default: int = 3, doc: str = "kernel size") -> Param:
    """A kernel that must be odd: the block pads k//2 to keep the input's size and adds the input back (or joins a
    pooled shortcut). An even kernel has no symmetric 'same' padding: its path comes out one pixel smaller and the
    join fails in training, so the schema refuses it (ParamError 'got 4, expected odd int ...'). Asymmetric padding
    is not offered: no reference network uses it, and the supernet's kernel sharing takes a kernel's centre."""
    return Param("kernel", "pair", default, f"{doc} (odd: keeps the size for the shortcut)", low=1, high=31,
                 odd=True)


def stride(default: int = 1) -> Param:
    return Param("stride", int, default, "stride (the first repeat of a stage carries it)", low=1, high=8)


def act(default: str = "relu", name: str = "act", doc: str = "activation") -> Param:
    return Param(name, str, default, doc, choices=ACTIVATIONS)


def norm(default: str = "batch") -> Param:
    return Param("norm", str, default, "normalisation", choices=NORMS)


def norm_settings() -> tuple[Param, Param]:
    """``norm_eps`` and ``norm_momentum``: the settings of every norm in a block (``layers.Norm``), declared by each
    block that has a norm. They change neither shapes, parameters nor MACs, only the function (pretrained weights
    need the values they were trained with)."""
    return (Param("norm_eps", float, NORM_EPS, "epsilon every norm of the block adds to the variance", low=0.0,
                  high=1.0),
            Param("norm_momentum", float, NORM_MOMENTUM,
                  "running-statistics momentum of the block's batch norms (new = (1-m) old + m batch)", low=0.0,
                  high=1.0))


def drop_path() -> Param:
    return Param("drop_path", float, 0.0, "stochastic-depth rate of the residual branch (the builder can schedule it)",
                 low=0.0, high=1.0)


def se_ratio(default: float = 0.0, doc: str = "squeeze-excitation ratio (0 disables SE)") -> Param:
    return Param("se_ratio", float, default, doc, low=0.0, high=1.0)
