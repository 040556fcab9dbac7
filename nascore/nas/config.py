"""Search settings: defaults < the space file's ``search:`` section < command-line / API overrides.

Every key is checked; an unknown key or a bad value names the key, what was found and what was expected. Plain
settings are declared as Params (:func:`nascore.io.settings.setting`), like training settings and block parameters;
the structured ones (objectives, constraints, mappings handed on to a data set, a strategy or the trainer) are
checked by :meth:`SearchConfig.check`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from nascore.errors import ParamError, suggest
from nascore.io.settings import check_keys, check_settings, setting

OBJECTIVES = {"val_acc": "maximize", "test_acc": "maximize", "params": "minimize", "macs": "minimize",
              "latency_ms": "minimize"}
PRUNERS = ("hyperband", "asha", "median", "none")
CONSTRAINTS = ("max_params", "max_macs", "max_latency_ms")


@dataclass
class SearchConfig:
    """Everything a run needs besides the space itself; stored in the run directory as ``config.yaml``."""

    data: str = setting(str, "digits", "data set (a plugin's name; `nascore datasets` lists them)")
    data_root: str | None = setting(str, None, "folder the data set is read from (none: the data set's own)")
    data_params: dict[str, Any] = field(default_factory=dict)          # the data set's parameters
    objectives: list[str] = field(default_factory=lambda: ["val_acc"])  # drawn from OBJECTIVES, each once
    strategy: str = setting(str, "tpe", "search strategy (a plugin's name)")
    strategy_options: dict[str, Any] = field(default_factory=dict)     # the strategy's options
    trials: int = setting(int, 20, "trials to train", low=1)
    epochs: int = setting(int, 5, "training epochs per trial", low=1)
    train: dict[str, Any] = field(default_factory=dict)                # TrainConfig settings of every trial
    evaluator: str = setting(str, "train", "trial evaluator (a plugin's name)")
    evaluator_options: dict[str, Any] = field(default_factory=dict)    # the evaluator's options
    constraints: dict[str, float] = field(default_factory=dict)        # CONSTRAINTS -> positive limits
    pruner: str = setting(str, "hyperband", "pruner of unpromising trials", choices=PRUNERS)
    workers: int = setting(int, 1, "trials trained at once", low=1)
    cpus_per_trial: float = setting(float, 1.0, "CPU cores per trial (fractions allowed; > 0)", low=0)
    gpus_per_trial: float = setting(float, 0.0, "GPUs per trial (fractions allowed)", low=0)
    address: str | None = setting(str, None, "Ray cluster address (none: a Ray of this machine)")
    storage: str | None = setting(str, None, "Optuna storage URL (none: the run's study.db)")
    seed: int = setting(int, 0, "seed of the strategy; trial N trains with seed + N")
    max_retries: int = setting(int, 1, "retries of a trial whose worker died", low=0)

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def merge(cls, *layers: Mapping[str, Any] | None, where: str = "search") -> "SearchConfig":
        """Later layers win; ``None`` values in a layer mean "not given"."""
        merged: dict[str, Any] = {}
        for layer in layers:
            check_keys(layer or {}, cls, where)
            merged.update({k: v for k, v in (layer or {}).items() if v is not None})
        config = cls(**merged)
        config.check(where)
        return config

    def check(self, where: str = "search") -> None:
        """Check and normalise every setting in place; a ParamError naming ``where`` and the setting otherwise."""
        def bad(key: str, expected: str) -> ParamError:
            return ParamError(f"got {getattr(self, key)!r:.60}, expected {expected}",
                              where=f"{where}: parameter {key!r}")

        try:
            check_settings(self)
        except ParamError as err:
            raise err.located(where) from None
        if self.cpus_per_trial <= 0:
            raise bad("cpus_per_trial", "a number > 0")
        if isinstance(self.objectives, str):
            self.objectives = [self.objectives]
        if not isinstance(self.objectives, list) or not self.objectives:
            raise bad("objectives", f"a list drawn from {', '.join(OBJECTIVES)}")
        for o in self.objectives:
            if o not in OBJECTIVES:
                raise ParamError(f"unknown objective {o!r}{suggest(str(o), OBJECTIVES)}; expected "
                                 f"{', '.join(OBJECTIVES)}", where=f"{where}: parameter 'objectives'")
        if len(set(self.objectives)) != len(self.objectives):
            raise bad("objectives", "each objective once")
        if not isinstance(self.constraints, Mapping):
            raise bad("constraints", f"a mapping with keys from {', '.join(CONSTRAINTS)}")
        for key, value in self.constraints.items():
            if key not in CONSTRAINTS:
                raise ParamError(f"unknown constraint{suggest(str(key), CONSTRAINTS)}; expected "
                                 f"{', '.join(CONSTRAINTS)}", where=f"{where}: constraints: {key!r}")
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise ParamError(f"got {value!r}, expected a positive number", where=f"{where}: constraints: {key!r}")
        for key in ("data_params", "strategy_options", "evaluator_options", "train"):
            if not isinstance(getattr(self, key), Mapping):
                raise bad(key, "a mapping")
