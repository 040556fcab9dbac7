"""Search settings: defaults < the space file's ``search:`` section < command-line / API overrides.

Every key is checked; an unknown key or a bad value names the key, what was found and what was expected. Every
setting is declared once as a Param (:func:`nascore.io.settings.setting`), like training settings and block
parameters; the mappings handed on to a data set, a strategy, an evaluator or the trainer are checked there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from nascore.blocks.spec import is_number
from nascore.errors import ParamError, suggest
from nascore.io.settings import check_keys, check_settings, each_once, positive, setting

OBJECTIVES = {"val_acc": "maximize", "test_acc": "maximize", "params": "minimize", "macs": "minimize",
              "latency_ms": "minimize"}
PRUNERS = ("hyperband", "asha", "median", "none")
CONSTRAINTS = ("max_params", "max_macs", "max_latency_ms")


def _limits(value: dict[str, Any]) -> dict[str, Any]:
    """Constraints: keys from CONSTRAINTS, each a positive number."""
    for key, limit in value.items():
        if key not in CONSTRAINTS:
            raise ParamError(f"unknown constraint{suggest(key, CONSTRAINTS)}; expected {', '.join(CONSTRAINTS)}",
                             where=repr(key))
        if not is_number(limit) or limit <= 0:
            raise ParamError(f"got {limit!r:.60}, expected a positive number", where=repr(key))
    return value


@dataclass
class SearchConfig:
    """Everything a run needs besides the space itself; stored in the run directory as ``config.yaml``."""

    data: str = setting(str, "digits", "data set (a plugin's name; `nascore datasets` lists them)")
    data_root: str | None = setting(str, None, "folder the data set is read from (none: the data set's own)")
    data_params: dict[str, Any] = setting("mapping", {}, "the data set's parameters")
    objectives: list[str] = setting("strs", ["val_acc"], "what the search optimises, each once",
                                    choices=tuple(OBJECTIVES), check=each_once)
    strategy: str = setting(str, "tpe", "search strategy (a plugin's name)")
    strategy_options: dict[str, Any] = setting("mapping", {}, "the strategy's options")
    trials: int = setting(int, 20, "trials to train", low=1)
    epochs: int = setting(int, 5, "training epochs per trial", low=1)
    train: dict[str, Any] = setting("mapping", {}, "training settings of every trial (a train: section)")
    evaluator: str = setting(str, "train", "trial evaluator (a plugin's name)")
    evaluator_options: dict[str, Any] = setting("mapping", {}, "the evaluator's options")
    constraints: dict[str, float] = setting("mapping", {}, f"limits a trial must keep ({', '.join(CONSTRAINTS)})",
                                            check=_limits)
    pruner: str = setting(str, "hyperband", "pruner of unpromising trials", choices=PRUNERS)
    workers: int = setting(int, 1, "trials trained at once", low=1)
    cpus_per_trial: float = setting(float, 1.0, "CPU cores per trial (fractions allowed; > 0)", low=0,
                                    check=positive)
    gpus_per_trial: float = setting(float, 0.0, "GPUs per trial (fractions allowed)", low=0)
    address: str | None = setting(str, None, "Ray cluster address (none: a Ray of this machine)")
    resource_timeout: float = setting(float, 300.0, "seconds a search waits for the cluster to start a first "
                                      "worker (resources busy, data set loading) before it gives up", low=0,
                                      check=positive)
    storage: str | None = setting(str, None, "Optuna storage URL (none: the run's study.db)")
    seed: int = setting(int, 0, "seed of the strategy; trial N trains with seed + N")
    max_retries: int = setting(int, 1, "retries of a trial whose worker died", low=0)
    tensorboard: bool = setting(bool, True, "per-trial and search scalars as TensorBoard event files in "
                                "RUN/tensorboard (when the tensorboard package is installed)")
    warm_start_proxy: str | None = setting(str, None, "warm start: score warm_start_candidates samples with this "
                                           "evaluator that scores without training (a zero-cost proxy such as "
                                           "naswot, or supernet) and train only the warm_start_top best (none: no "
                                           "warm start)")
    warm_start_options: dict[str, Any] = setting("mapping", {}, "warm start: the scoring evaluator's options (e.g. "
                                                 "checkpoint: SUPERNET_DIR for supernet)")
    warm_start_candidates: int | None = setting(int, None, "warm start: how many samples the proxy scores (M)",
                                                low=1)
    warm_start_top: int | None = setting(int, None, "warm start: how many of the best-scored samples are trained "
                                         "(k; at most warm_start_candidates and trials)", low=1)

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
        if isinstance(self.objectives, str):    # YAML's shorthand for one objective
            self.objectives = [self.objectives]
        try:
            check_settings(self)
            self._check_warm_start()
        except ParamError as err:
            raise err.located(where) from None

    def _check_warm_start(self) -> None:
        """The three warm-start settings come together: a proxy, M candidates, k <= M and k <= trials."""
        given = {k: getattr(self, k) for k in ("warm_start_candidates", "warm_start_top", "warm_start_options")}
        if self.warm_start_proxy is None:
            for key, value in given.items():
                if value:
                    raise ParamError(f"got {value!r} without warm_start_proxy; expected a proxy to score the "
                                     f"candidates with (e.g. warm_start_proxy: naswot)", where=f"parameter {key!r}")
            return
        for key, value in given.items():
            if value is None and key != "warm_start_options":
                raise ParamError(f"missing with warm_start_proxy {self.warm_start_proxy!r}; expected a number >= 1",
                                 where=f"parameter {key!r}")
        if self.warm_start_top > self.warm_start_candidates:
            raise ParamError(f"got {self.warm_start_top}, expected at most warm_start_candidates "
                             f"({self.warm_start_candidates}): only the scored candidates can be trained",
                             where="parameter 'warm_start_top'")
        if self.warm_start_top > self.trials:
            raise ParamError(f"got {self.warm_start_top}, expected at most trials ({self.trials}): the trained "
                             f"candidates count towards the trials", where="parameter 'warm_start_top'")
