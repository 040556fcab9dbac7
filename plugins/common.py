"""Parameter definitions shared by the built-in blocks, so a name means the same thing everywhere."""

from __future__ import annotations

from nascore.blocks.layers import ACTIVATIONS, NORMS
from nascore.blocks.spec import REQUIRED, Param


def out(doc: str = "output channels") -> Param:
    return Param("out", int, REQUIRED, doc, low=1, high=1 << 16, channels=True)


def kernel(default: int = 3, doc: str = "kernel size") -> Param:
    return Param("kernel", "pair", default, doc, low=1, high=31)


def stride(default: int = 1) -> Param:
    return Param("stride", int, default, "stride (the first repeat of a stage carries it)", low=1, high=8)


def act(default: str = "relu", name: str = "act", doc: str = "activation") -> Param:
    return Param(name, str, default, doc, choices=ACTIVATIONS)


def norm(default: str = "batch") -> Param:
    return Param("norm", str, default, "normalisation", choices=NORMS)


def drop_path() -> Param:
    return Param("drop_path", float, 0.0, "stochastic-depth rate of the residual branch (the builder can schedule it)",
                 low=0.0, high=1.0)


def se_ratio(default: float = 0.0, doc: str = "squeeze-excitation ratio (0 disables SE)") -> Param:
    return Param("se_ratio", float, default, doc, low=0.0, high=1.0)
