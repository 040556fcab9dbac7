"""Built-in search strategies: random, grid, TPE, NSGA-II, Gaussian-process BO and regularized evolution.

Registered through the ``nascore`` entry-point group (``nascore.nas.strategies``) like any third-party strategy plugin.
Optuna is imported when a sampler is made, not when the plugin loads.
"""

from __future__ import annotations

import warnings

from nascore.ext.hookspec import hookimpl
from nascore.blocks.spec import Param
from nascore.errors import StrategyError
from nascore.nas.strategies import StrategyContext, StrategySpec


def _random(ctx: StrategyContext):
    import optuna

    return optuna.samplers.RandomSampler(seed=ctx.seed)


def _in_optimize_loop(study) -> bool:
    """Whether ``study.optimize`` is running in this thread (False under ask/tell).

    Optuna offers no public way to ask, so this reads one private attribute: ``Study._thread_local.in_optimize_loop``
    (set by ``optuna/study/_optimize.py``, read by ``Study.stop`` to refuse outside ``optimize``). This is the only
    place nascore reads it, on purpose without a default: should Optuna rename it, this raises AttributeError instead
    of silently never stopping ``optimize``; ``test_in_optimize_loop_reads_optuna_private``
    (tests/nas/test_strategies.py) fails too.
    """
    return bool(study._thread_local.in_optimize_loop)


def _grid_sampler_class():
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """Optuna's GridSampler, safe under ask/tell.

        The stock sampler calls ``study.stop()`` once the grid is covered, which raises RuntimeError outside
        ``study.optimize`` (optuna/optuna#5141). Calling it only inside ``optimize`` keeps it stopping ``optimize``
        as before; an ask/tell loop asks :meth:`is_exhausted` (see :func:`nascore.nas.strategies.exhausted`) before
        each ``ask`` instead. (Catching the RuntimeError would not do: under ask/tell the stock ``after_trial`` also
        reads the ``grid_id`` of enqueued trials, which have none.)
        """

        def after_trial(self, study, trial, state, values) -> None:
            if _in_optimize_loop(study):
                super().after_trial(study, trial, state, values)

    return AskTellGridSampler


def _grid(ctx: StrategyContext):
    if ctx.grid is None:
        raise StrategyError("space has continuous parameters; grid needs choices or integer ranges")
    empty = [name for name, values in ctx.grid.items() if len(values) == 0]
    if empty:
        raise StrategyError(f"parameter {empty[0]!r} has no values to enumerate")
    return _grid_sampler_class()({name: list(values) for name, values in ctx.grid.items()}, seed=ctx.seed)


def _tpe(ctx: StrategyContext):
    import optuna

    with warnings.catch_warnings():  # ``group`` is marked experimental by Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=ctx.workers > 1,
                                          n_startup_trials=ctx.options["n_startup_trials"], seed=ctx.seed)


def _nsga2(ctx: StrategyContext):
    import optuna

    return optuna.samplers.NSGAIISampler(population_size=ctx.options["population"],
                                         crossover_prob=ctx.options["crossover_prob"], seed=ctx.seed)


def _gp(ctx: StrategyContext):
    import optuna

    return optuna.samplers.GPSampler(n_startup_trials=ctx.options["n_startup_trials"], seed=ctx.seed)


def _evolution(ctx: StrategyContext):
    from nascore_plugins.evolution import RegularizedEvolutionSampler

    population = ctx.options["population"]
    sample_size = ctx.options["sample_size"]
    if sample_size is None:
        sample_size = min(5, population)
    return RegularizedEvolutionSampler(population=population, sample_size=sample_size, seed=ctx.seed)


def _startup(default: int) -> Param:
    return Param("n_startup_trials", int, default, "random trials before the model is used", low=0)


STRATEGIES = [
    StrategySpec(
        name="random", make=_random, multi_objective=True, aliases=("random_search",),
        doc="Random search: every parameter drawn independently and uniformly (Bergstra & Bengio 2012; "
            "Li & Talwalkar 2019 for NAS)."),
    StrategySpec(
        name="grid", make=_grid, multi_objective=True, aliases=("grid_search",),
        doc="Grid search: every combination of a finite space exactly once, in shuffled order, then stop "
            "(the baseline of Bergstra & Bengio 2012)."),
    StrategySpec(
        name="tpe", make=_tpe, multi_objective=True, aliases=("bayes", "bayesian"),
        options=(_startup(10),),
        doc="Tree-structured Parzen Estimator, multivariate and grouped for conditional spaces, constant liar when "
            "parallel (Bergstra et al. 2011; Falkner et al. 2018)."),
    StrategySpec(
        name="nsga2", make=_nsga2, multi_objective=True, aliases=("nsgaii", "nsga-ii", "nsga_ii"),
        options=(Param("population", int, 50, "individuals per generation", low=2),
                 Param("crossover_prob", float, 0.9, "probability that a child is a crossover", low=0.0, high=1.0)),
        doc="NSGA-II: elitist genetic algorithm with non-dominated sorting and crowding distance "
            "(Deb et al. 2002)."),
    StrategySpec(
        name="gp", make=_gp, multi_objective=True, aliases=("gaussian_process", "bo"),
        options=(_startup(10),),
        doc="Gaussian-process Bayesian optimisation with log expected (hypervolume) improvement "
            "(Ament et al. 2023; Daulton et al. 2020)."),
    StrategySpec(
        name="evolution", make=_evolution, multi_objective=False,
        aliases=("regularized_evolution", "aging_evolution", "re"),
        options=(Param("population", int, 20, "population size; also the number of random warm-up trials", low=1),
                 Param("sample_size", int, None, "tournament size: members drawn to pick a parent "
                       "(default: 5, or the population if smaller)", low=1)),
        doc="Regularized (aging) evolution mutating one decision per child (Real et al. 2019, AmoebaNet)."),
]


@hookimpl
def nascore_strategies():
    return list(STRATEGIES)
