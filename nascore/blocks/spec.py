"""What a block is: a module factory, a typed parameter schema, its arity, and an optional weight-free formula.

One schema serves the YAML validator, the CLI listing and the search-space language (timm's lesson: never probe a
constructor with try/except). Input channels are never a parameter: the builder passes them from the producers.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from nascore.errors import ParamError, suggest

Shape = tuple[int, ...]  # one sample's shape, no batch dimension: (C, H, W) or (C,)

RESERVED_KEYS = frozenset({"name", "block", "inputs", "repeat"})


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()


def is_int(value: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a channel count or a kernel to nascore)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)

# Value types a parameter can have. "pair" is an int or [int, int] (kernel 3 or [1, 7]); "ints" a list of ints;
# "mapping" string keys to values (settings handed on as a whole, e.g. a strategy's options).
_TYPE_NAMES = {int: "int", float: "float", bool: "bool", str: "str", "pair": "int or [int, int]",
               "ints": "list of ints", "strs": "list of strings", "mapping": "mapping of names to values"}


@dataclass(frozen=True, slots=True)
class Param:
    """One typed block parameter.

    ``choices`` and ``low``/``high`` apply to each item of a list type. ``channels=True`` marks a channel count that
    width scaling multiplies (EfficientNet rounding applies). ``odd=True`` accepts odd sizes only (each of a pair):
    a kernel whose block keeps the input's size with padding k//2 and adds or concatenates it to another path.
    """

    name: str
    type: Any  # int | float | bool | str | "pair" | "ints" | "strs" | "mapping"
    default: Any = REQUIRED
    doc: str = ""
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    channels: bool = False
    odd: bool = False

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        return _TYPE_NAMES[self.type]

    def describe(self) -> str:
        """Short 'type, range/choices, default' text for errors and listings."""
        text = self.type_name
        if self.choices is not None:
            text += " in {" + ", ".join(map(str, self.choices)) + "}"
        elif self.low is not None or self.high is not None:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            text += f" in [{low}, {high}]"
        return f"odd {text}" if self.odd else text

    def check(self, value: Any) -> Any:
        """Return ``value`` normalised to this parameter's type, or raise ParamError(what found, what expected)."""
        if value is None and self.default is None:  # "auto": the block decides (e.g. bias only without a norm)
            return None
        t = self.type
        ok = True
        if t is bool:
            ok = isinstance(value, bool)
        elif t is int:
            ok = is_int(value)
        elif t is float:
            ok = is_number(value)
            value = float(value) if ok else value
        elif t is str:
            ok = isinstance(value, str)
        elif t == "pair":
            if is_int(value):
                pass
            elif (isinstance(value, (list, tuple)) and len(value) == 2
                  and all(is_int(v) for v in value)):
                value = value[0] if value[0] == value[1] else (value[0], value[1])
            else:
                ok = False
        elif t == "ints":
            ok = (isinstance(value, (list, tuple)) and len(value) > 0
                  and all(is_int(v) for v in value))
            value = tuple(value) if ok else value
        elif t == "strs":
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            value = tuple(value) if ok else value
        elif t == "mapping":
            ok = isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
            value = dict(value) if ok else value
        if ok and t is float and not math.isfinite(value):
            ok = False
        if not ok:
            raise ParamError(f"got {reprlib.repr(value)} ({type(value).__name__}), expected {self.describe()}",
                             where=f"parameter {self.name!r}")
        items = value if t in ("ints", "strs") else (value,)
        for v in items:
            if self.choices is not None and v not in self.choices:
                hint = suggest(v, map(str, self.choices)) if isinstance(v, str) else ""
                raise ParamError(f"got {reprlib.repr(v)}, expected one of {list(self.choices)}{hint}",
                                 where=f"parameter {self.name!r}")
        for v in (value if isinstance(value, tuple) else (value,)):
            if is_number(v):
                if ((self.low is not None and v < self.low) or (self.high is not None and v > self.high)
                        or (self.odd and v % 2 == 0)):
                    raise ParamError(f"got {reprlib.repr(value)}, expected {self.describe()}",
                                     where=f"parameter {self.name!r}")
        return value


@dataclass(frozen=True, slots=True)
class Arity:
    """How many inputs a block takes. ``one``: a tensor; otherwise the module's forward takes a list of tensors."""

    min: int = 1
    max: int | None = 1

    @property
    def single(self) -> bool:
        return self.min == 1 and self.max == 1

    def accepts(self, n: int) -> bool:
        return n >= self.min and (self.max is None or n <= self.max)

    def describe(self) -> str:
        if self.max == self.min:
            return f"exactly {self.min} input{'s' if self.min != 1 else ''}"
        return f"at least {self.min} inputs" if self.max is None else f"{self.min} to {self.max} inputs"


ONE = Arity(1, 1)
MANY = Arity(2, None)     # merges: add, concat, multiply
LIST = Arity(1, None)     # pyramids: FPN, PAN
def SEVERAL(n: int) -> Arity:  # noqa: N802 - reads like the constants beside it
    return Arity(n, n)


@dataclass(frozen=True, slots=True)
class Inference:
    """What a block makes of its input shapes, computed without allocating weights.

    ``outputs`` maps output names to shapes, in the order the module returns them (one output is named ``out``).
    ``macs`` follows fvcore's convention (see :mod:`nascore.blocks.tally`).
    """

    outputs: dict[str, Shape]
    params: int
    macs: int


def resolve_params(params: Sequence[Param], given: Mapping[str, Any], owner: str,
                   noun: str = "parameter") -> dict[str, Any]:
    """Check ``given`` against the schema ``params`` and fill defaults: the one way blocks, strategy options and
    evaluator options are read. A ParamError names the parameter, what was found and what ``owner`` takes."""
    by_name = {p.name: p for p in params}
    for key in given:
        if key not in by_name:
            known = ", ".join(by_name) or "none"
            raise ParamError(f"unknown {noun}{suggest(str(key), by_name)}; {owner} takes: {known}",
                             where=f"{noun} {reprlib.repr(key)}")
    resolved = {}
    for p in params:
        if p.name in given:
            try:
                resolved[p.name] = p.check(given[p.name])
            except ParamError as err:
                raise ParamError(err.message, where=f"{noun} {p.name!r}") from None
        elif p.required:
            raise ParamError(f"missing; expected {p.describe()} ({p.doc})", where=f"{noun} {p.name!r}")
        else:
            resolved[p.name] = p.default
    return resolved


@dataclass(frozen=True)
class BlockSpec:
    """A block: ``module(in_channels, **params)`` builds it; ``infer(in_shapes, **params)``, optional, predicts it.

    ``in_channels`` is an int for single-input blocks and a list of ints otherwise; ``in_shapes`` is always a list.
    Without ``infer``, nascore measures the module on the meta device (:mod:`nascore.blocks.estimate`, cached);
    with one, it must agree exactly with the built module's output shapes, parameters and MACs
    (:func:`nascore.blocks.testing.check_block`, ``nascore blocks --check``); it is hundreds of times faster.
    ``canonical(params)``, when given, maps equivalent parameter sets (isomorphic cells) to one representative.
    ``examples`` are parameter sets ``nascore blocks --check`` tries (needed when a parameter is required); an
    example may hold ``inputs``, a list of input shapes, where the default inputs do not fit.
    """

    name: str
    module: Callable[..., nn.Module]
    infer: Callable[..., Inference] | None = None
    params: tuple[Param, ...] = ()
    arity: Arity = ONE
    doc: str = ""
    paper: str = ""
    aliases: tuple[str, ...] = ()
    canonical: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    examples: tuple[Mapping[str, Any], ...] = field(default=(), compare=False)
    _by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {p.name: p for p in self.params}
        if len(by_name) != len(self.params):
            raise ValueError(f"block {self.name!r} declares a parameter twice")
        clash = RESERVED_KEYS & by_name.keys()
        if clash:
            raise ValueError(f"block {self.name!r} uses reserved parameter names {sorted(clash)}")
        object.__setattr__(self, "_by_name", by_name)
        if isinstance(self.examples, Mapping) or not all(isinstance(e, Mapping) for e in self.examples):
            raise ValueError(f"block {self.name!r}: examples must be a tuple of parameter dicts")
        object.__setattr__(self, "examples", tuple(self.examples))

    def param(self, name: str) -> Param | None:
        return self._by_name.get(name)

    def resolve(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``given`` against the schema and fill defaults; raise ParamError naming the parameter."""
        return resolve_params(self.params, given, f"block {self.name!r}")

    def in_channels(self, in_shapes: Sequence[Shape]) -> int | list[int]:
        """What ``module`` receives: an int for single-input blocks, else one int per input."""
        return in_shapes[0][0] if self.arity.single else [s[0] for s in in_shapes]

    @property
    def summary(self) -> str:
        return (self.doc or "").strip().splitlines()[0] if self.doc else ""
