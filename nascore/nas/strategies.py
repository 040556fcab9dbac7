"""Search strategies are plugins: each one makes an Optuna sampler for a study driven by ask/tell.

A plugin's ``nascore_strategies()`` hook returns :class:`StrategySpec` entries. Their ``make`` (a
:class:`SamplerFactory`) receives a :class:`StrategyContext` (objective directions, seed, number of concurrent
trials, the finite grid of the space when there is one, and the user's options, already checked against
``StrategySpec.options`` and completed with their defaults) and returns an ``optuna.samplers.BaseSampler``, whose
documented contract (``infer_relative_search_space``, ``sample_relative``, ``sample_independent``, and the
``before_trial`` / ``after_trial`` hooks that do nothing by default) is the whole of what the search asks of it,
besides the optional :class:`Exhaustible` ``is_exhausted``.

Optuna is imported lazily: loading the plugins (``nascore blocks``) does not pay for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from nascore.blocks.spec import Param, resolve_params
from nascore.errors import NascoreError, ParamError, StrategyError, plugin_code
from nascore.ext.registry import Registry

if TYPE_CHECKING:
    import optuna

DIRECTIONS = ("maximize", "minimize")


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy's ``make`` needs to know about the study it will drive.

    ``directions``: one of "maximize"/"minimize" per objective. ``workers``: trials evaluated concurrently (a
    sampler may then hedge, e.g. TPE's constant liar). ``grid``: every parameter's finite values when the space is
    finite, else None. ``options``: the user's options for this strategy (``{"population": 50}``); inside ``make``
    they are checked and completed with defaults.
    """

    directions: Sequence[str] = ("minimize",)
    seed: int | None = None
    workers: int = 1
    grid: Mapping[str, Sequence[Any]] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1


class SamplerFactory(Protocol):
    """``make(context)``: a new ``optuna.samplers.BaseSampler`` for one study, as ``context`` asks.

    Called once per search (and again on resume). Raise :class:`~nascore.errors.StrategyError` when the strategy
    cannot serve the context (e.g. a grid over continuous parameters); a ValueError (Optuna rejecting an argument)
    or any other exception is reported as the strategy's error too.
    """

    def __call__(self, context: StrategyContext) -> optuna.samplers.BaseSampler:
        ...


@runtime_checkable
class Exhaustible(Protocol):
    """A sampler that can run out of new trials (a grid): the search asks before each ``study.ask()``."""

    def is_exhausted(self, study: optuna.Study) -> bool:
        """Whether every trial this sampler can propose has been asked for."""


@dataclass(frozen=True)
class StrategySpec:
    """One search strategy: a sampler factory and what it can do.

    ``multi_objective``: whether it handles several objectives (else it is single-objective only). ``options``: the
    options a user may pass, typed and ranged like block parameters (unknown ones are an error naming them).
    """

    name: str
    make: SamplerFactory
    doc: str
    multi_objective: bool
    aliases: tuple[str, ...] = ()
    options: tuple[Param, ...] = ()


STRATEGIES: Registry[StrategySpec] = Registry("strategy", "nascore_strategies", StrategySpec, StrategyError,
                                               plural="strategies")


def get_strategy(name: str) -> StrategySpec:
    """The strategy registered under ``name`` (or an alias); unknown names raise StrategyError with close names."""
    return STRATEGIES.get(name)


def check_context(spec: StrategySpec, context: StrategyContext) -> StrategyContext:
    """Validate ``context`` for ``spec``; return it with the options type-checked and their defaults filled in."""
    where = f"strategy {spec.name!r}"
    directions = [str(getattr(d, "name", d)).lower() for d in context.directions]
    if not directions:
        raise StrategyError("no objective direction given; expected one of 'maximize', 'minimize' per objective",
                            where=where)
    for d in directions:
        if d not in DIRECTIONS:
            raise StrategyError(f"direction {d!r} is not one of 'maximize', 'minimize'", where=where)
    if len(directions) > 1 and not spec.multi_objective:
        multi = sorted(n for n, s in STRATEGIES.items() if s.multi_objective)
        raise StrategyError(
            f"is single-objective but {len(directions)} objectives were given ({', '.join(directions)}); "
            f"multi-objective strategies: {', '.join(multi) or 'none registered'}", where=where)
    if not isinstance(context.workers, int) or isinstance(context.workers, bool) or context.workers < 1:
        raise StrategyError(f"workers must be a positive integer, got {context.workers!r}", where=where)
    try:
        options = resolve_params(spec.options, dict(context.options or {}), where, noun="option")
    except ParamError as err:
        raise StrategyError(err.message, where=f"{where}: {err.where}") from None
    return replace(context, directions=directions, options=options)


def make_sampler(name: str, context: StrategyContext | None = None) -> "optuna.samplers.BaseSampler":
    """Build the sampler of strategy ``name`` for ``context`` (default: one minimised objective, no seed).

    Errors (StrategyError): unknown strategy (with close names), a single-objective strategy asked for several
    objectives (naming the multi-objective ones), unknown or ill-typed options, a strategy that cannot serve the
    space (grid over continuous parameters).
    """
    spec = get_strategy(name)
    context = check_context(spec, context if context is not None else StrategyContext())
    where = f"strategy {spec.name!r}"
    try:
        with plugin_code("its sampler factory", StrategyError, where):
            try:
                sampler = spec.make(context)
            except ValueError as err:  # optuna rejects an argument (e.g. NSGA-II population < 2): the user's
                raise StrategyError(str(err), where=where) from None
    except NascoreError as err:
        if isinstance(err, StrategyError) and err.where is not None:
            raise
        raise err.located(where) from None
    import optuna

    if not isinstance(sampler, optuna.samplers.BaseSampler):
        raise StrategyError(f"its factory returned {type(sampler).__name__}, expected an optuna sampler",
                            where=where)
    return sampler


def exhausted(sampler: Any, study: "optuna.Study") -> bool:
    """Whether ``sampler`` has nothing new to propose for ``study`` (a grid fully evaluated).

    An ask/tell loop checks this before each ``study.ask()``: Optuna's ``study.stop()`` only works inside
    ``study.optimize``.
    """
    return isinstance(sampler, Exhaustible) and bool(sampler.is_exhausted(study))


__all__ = ["DIRECTIONS", "STRATEGIES", "Exhaustible", "SamplerFactory", "StrategyContext", "StrategySpec",
           "check_context", "exhausted", "get_strategy", "make_sampler"]
