"""Regularized (aging) evolution, AmoebaNet's search algorithm (Real et al. 2019), as a define-by-run Optuna sampler.

The population is the last ``population`` completed trials (in order of completion): a new trial pushes the oldest
out, whatever its score; that ageing is the "regularization". Each new trial draws ``sample_size`` members at
random, takes the best as its parent, copies the parent's parameter values and mutates exactly one of them:

- categorical: a different choice; int: another value of the range (on its step); float: a new draw within bounds
  (on its step / log scale).
- A parameter the parent never suggested (a branch of a conditional space the mutation opened) is drawn at random.

Until ``population`` trials have completed, trials are random. The choice of parent and mutated parameter is made
in ``before_trial`` and kept in the trial's system attributes (``nascore_plugins.evolution:*``), so a study resumed in
another process, or a trial asked in one worker and sampled in another, continues the same lineage. The user
attributes ``parent`` (trial number) and ``mutated`` (parameter name) are recorded for analysis.

Everything goes through Optuna's public API but writing those attributes from inside a sampler hook, for which Optuna
has none: :func:`_record` is the one place that reaches into its privates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

_PREFIX = "nascore_plugins.evolution:"
PARENT_KEY = _PREFIX + "parent"          # parent's trial number
MUTATED_KEY = _PREFIX + "mutated"        # name of the parameter to mutate
_MAX_REDRAWS = 64


class RegularizedEvolutionSampler(BaseSampler):
    """Aging evolution with a one-decision mutation per child (Real et al. 2019, "Regularized Evolution for Image
    Classifier Architecture Search"). Single objective only.

    Args:
        population: size of the population (the last ``population`` completed trials); also the number of random
            trials before evolution starts.
        sample_size: tournament size: how many members are drawn to pick the parent.
        seed: seed of the random choices (warm-up, tournament, mutation).
    """

    def __init__(self, population: int = 20, sample_size: int = 5, seed: int | None = None) -> None:
        if not isinstance(population, int) or population < 1:
            raise ValueError(f"population must be a positive integer, got {population!r}")
        if not isinstance(sample_size, int) or sample_size < 1:
            raise ValueError(f"sample_size must be a positive integer, got {sample_size!r}")
        if sample_size > population:
            raise ValueError(f"sample_size ({sample_size}) must not exceed population ({population})")
        self.population = population
        self.sample_size = sample_size
        self._seed = seed
        self._rng = np.random.default_rng(seed)
        self._random = RandomSampler(seed=None if seed is None else seed + 1)
        # (study, child number) -> (parent, mutated name), or None for a random trial: what before_trial decided,
        # kept here because reading the trial's system attributes back costs a storage read per suggest (17 ms on
        # SQLite: most of a warm start's time asking 500 candidates)
        self._plans: dict[tuple[str, int], tuple[FrozenTrial, str] | None] = {}

    def __str__(self) -> str:
        return f"RegularizedEvolutionSampler(population={self.population}, sample_size={self.sample_size})"

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    # -- the relative search space is empty: every parameter goes through sample_independent --------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return {}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        return {}

    # -- selection ------------------------------------------------------------------------------------------------

    def population_of(self, study: Study) -> list[FrozenTrial]:
        """The current population: the last ``population`` COMPLETE trials, oldest first (by completion)."""
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        complete = sorted(complete, key=lambda t: (t.datetime_complete, t.number))
        return complete[-self.population:] if len(complete) >= self.population else []

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        if len(study.directions) > 1:
            raise ValueError(f"{type(self).__name__} cannot serve a multi-objective study ({len(study.directions)} "
                             "directions)")
        system_attrs = trial.system_attrs
        if PARENT_KEY in system_attrs or "fixed_params" in system_attrs:
            return  # decided already (resumed elsewhere), or an enqueued trial with its own parameters
        key = (study.study_name, trial.number)
        self._plans[key] = None
        members = self.population_of(study)
        if not members:
            return  # warm-up: random
        picks = self._rng.choice(len(members), size=self.sample_size, replace=False)
        contenders = [members[i] for i in sorted(picks)]
        if study.direction == StudyDirection.MAXIMIZE:
            parent = max(contenders, key=lambda t: t.value)
        else:
            parent = min(contenders, key=lambda t: t.value)
        mutable = [name for name, dist in parent.distributions.items() if not dist.single()]
        if not mutable:
            return  # nothing to mutate: a random trial instead of a duplicate
        mutated = mutable[int(self._rng.integers(len(mutable)))]
        _record(study, trial, system={PARENT_KEY: parent.number, MUTATED_KEY: mutated},
                user={"parent": parent.number, "mutated": mutated})
        self._plans[key] = (parent, mutated)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._plans.pop((study.study_name, trial.number), None)

    # -- variation ------------------------------------------------------------------------------------------------

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        key = (study.study_name, trial.number)
        if key not in self._plans:   # another process asked this trial, or the sampler was re-created: the storage
            self._plans[key] = _stored_plan(study, trial)
        plan = self._plans[key]
        if plan is None:
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        parent, mutated = plan
        if param_name not in parent.params:  # a branch the parent never took
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        value = parent.params[param_name]
        if not _contains(param_distribution, value):  # the space changed under this name: a fresh draw
            return self._random.sample_independent(study, trial, param_name, param_distribution)
        if param_name != mutated:
            return value
        return self._mutate(study, trial, param_name, param_distribution, value)

    def _mutate(self, study: Study, trial: FrozenTrial, name: str, dist: BaseDistribution, value: Any) -> Any:
        rng = self._rng
        if isinstance(dist, CategoricalDistribution):
            current = dist.to_internal_repr(value)
            others = [i for i in range(len(dist.choices)) if i != current]
            return dist.choices[others[int(rng.integers(len(others)))]]
        if isinstance(dist, IntDistribution) and not dist.log:
            return int(_other_on_grid(rng, dist.low, dist.high, dist.step, value))
        if isinstance(dist, FloatDistribution) and dist.step is not None:
            return float(_other_on_grid(rng, dist.low, dist.high, dist.step, value))
        # log-scaled int, continuous float (uniform or log): redraw until it differs
        for _ in range(_MAX_REDRAWS):
            new = self._random.sample_independent(study, trial, name, dist)
            if new != value:
                return new
        if isinstance(dist, IntDistribution):  # a tiny log range: pick another integer uniformly
            return int(_other_on_grid(rng, dist.low, dist.high, 1, value))
        return new


def _stored_plan(study: Study, trial: FrozenTrial) -> tuple[FrozenTrial, str] | None:
    """The parent and mutated name that ``before_trial`` recorded in ``trial``'s system attributes (None: random)."""
    system_attrs = trial.system_attrs
    mutated = system_attrs.get(MUTATED_KEY)
    if mutated is None:
        return None
    number = system_attrs[PARENT_KEY]
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number), mutated


def _record(study: Study, trial: FrozenTrial, system: dict[str, Any], user: dict[str, Any]) -> None:
    """Write system and user attributes of the running ``trial`` from inside a sampler hook.

    Optuna gives samplers no public way to do this (its own GridSampler and CmaEsSampler write
    ``study._storage.set_trial_system_attr(trial._trial_id, ...)``); this is the only place nascore does the same.
    The running Trial reads its user attributes from the FrozenTrial the hook receives, so they are set there too.
    ``test_evolution_records_attributes_through_optuna_privates`` (tests/nas/test_strategies.py) fails loudly when
    Optuna changes any of it.
    """
    storage, trial_id = study._storage, trial._trial_id
    for key, value in system.items():
        storage.set_trial_system_attr(trial_id, key, value)
    for key, value in user.items():
        storage.set_trial_user_attr(trial_id, key, value)
        trial.user_attrs[key] = value


def _contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is one of ``dist``'s values: among its choices, or within its bounds and on its step."""
    try:
        internal = dist.to_internal_repr(value)   # a categorical raises for a value that is not a choice
    except (ValueError, TypeError):
        return False
    if isinstance(dist, CategoricalDistribution):
        return True
    if not isinstance(dist, (IntDistribution, FloatDistribution)) or not dist.low <= internal <= dist.high:
        return False
    steps = None if dist.step is None else (internal - dist.low) / dist.step
    return steps is None or abs(steps - round(steps)) < 1e-8


def _other_on_grid(rng: np.random.Generator, low: float, high: float, step: float, value: float) -> float:
    """A value of ``low, low + step, ..., <= high`` other than ``value``, uniformly."""
    n = int(math.floor((high - low) / step + 1e-8)) + 1
    current = min(max(int(round((value - low) / step)), 0), n - 1)
    k = int(rng.integers(n - 1))
    if k >= current:
        k += 1
    result = low + k * step
    if isinstance(low, int) and isinstance(step, int):
        return result
    return min(float(result), float(high))


__all__ = ["MUTATED_KEY", "PARENT_KEY", "RegularizedEvolutionSampler"]
