"""Search settings: defaults < the space file's ``search:`` section < command-line / API overrides.

Every key is checked; an unknown key or a bad value names the key, what was found and what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from nascore.errors import ParamError, suggest

OBJECTIVES = {"val_acc": "maximize", "test_acc": "maximize", "params": "minimize", "macs": "minimize",
              "latency_ms": "minimize"}
PRUNERS = ("hyperband", "asha", "median", "none")
CONSTRAINTS = ("max_params", "max_macs", "max_latency_ms")


@dataclass
class SearchConfig:
    """Everything a run needs besides the space itself; stored in the run directory as ``config.yaml``."""

    data: str = "digits"
    data_root: str | None = None
    data_params: dict[str, Any] = field(default_factory=dict)
    objectives: list[str] = field(default_factory=lambda: ["val_acc"])
    strategy: str = "tpe"
    strategy_options: dict[str, Any] = field(default_factory=dict)
    trials: int = 20
    epochs: int = 5
    train: dict[str, Any] = field(default_factory=dict)
    evaluator: str = "train"
    constraints: dict[str, float] = field(default_factory=dict)
    pruner: str = "hyperband"
    workers: int = 1
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    address: str | None = None
    storage: str | None = None
    seed: int = 0
    max_retries: int = 1

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def merge(cls, *layers: Mapping[str, Any] | None, where: str = "search") -> "SearchConfig":
        """Later layers win; ``None`` values in a layer mean "not given"."""
        merged: dict[str, Any] = {}
        known = {f.name for f in fields(cls)}
        for layer in layers:
            for key, value in (layer or {}).items():
                if key not in known:
                    raise ParamError(f"unknown setting{suggest(key, known)}; expected one of {', '.join(sorted(known))}",
                                     where=f"{where}: {key!r}")
                if value is not None:
                    merged[key] = value
        config = cls(**merged)
        config.check(where)
        return config

    def check(self, where: str = "search") -> None:
        def bad(key: str, expected: str) -> ParamError:
            return ParamError(f"got {getattr(self, key)!r:.60}, expected {expected}", where=f"{where}: {key!r}")

        if isinstance(self.objectives, str):
            self.objectives = [self.objectives]
        if not isinstance(self.objectives, list) or not self.objectives:
            raise bad("objectives", f"a list drawn from {', '.join(OBJECTIVES)}")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise ParamError(f"unknown objective {o!r}{suggest(str(o), OBJECTIVES)}; expected "
                                 f"{', '.join(OBJECTIVES)}", where=f"{where}: 'objectives'")
        if len(set(self.objectives)) != len(self.objectives):
            raise bad("objectives", "each objective once")
        for key, low in (("trials", 1), ("epochs", 1), ("workers", 1), ("max_retries", 0)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise bad(key, f"an int >= {low}")
        for key in ("cpus_per_trial", "gpus_per_trial"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise bad(key, "a number >= 0 (fractions allowed)")
        if self.cpus_per_trial <= 0:
            raise bad("cpus_per_trial", "a number > 0")
        if self.pruner not in PRUNERS:
            raise bad("pruner", f"one of {', '.join(PRUNERS)}")
        if not isinstance(self.constraints, Mapping):
            raise bad("constraints", f"a mapping with keys from {', '.join(CONSTRAINTS)}")
        for key, value in self.constraints.items():
            if key not in CONSTRAINTS:
                raise ParamError(f"unknown constraint{suggest(str(key), CONSTRAINTS)}; expected "
                                 f"{', '.join(CONSTRAINTS)}", where=f"{where}: constraints: {key!r}")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ParamError(f"got {value!r}, expected a positive number", where=f"{where}: constraints: {key!r}")
        for key in ("data_params", "strategy_options", "train"):
            if not isinstance(getattr(self, key), Mapping):
                raise bad(key, "a mapping")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise bad("seed", "an int")
