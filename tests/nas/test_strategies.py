"""Search strategies as plugins: every registered strategy drives a real Optuna study through ask/tell."""

from __future__ import annotations

import itertools
import statistics

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from nascore_plugins.evolution import MUTATED_KEY, PARENT_KEY, RegularizedEvolutionSampler
from nascore.errors import StrategyError
from nascore.ext.hookspec import hookimpl
from nascore.nas.strategies import STRATEGIES, StrategyContext, StrategySpec, exhausted, make_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)

OPS = ["conv3", "conv5", "sep3", "skip"]
GRID = {"op": OPS, "depth": [1, 2, 3], "width": [16, 32]}


def finite_toy(trial):
    """Categorical + int (stepped): a finite space, the one GRID enumerates."""
    op = trial.suggest_categorical("op", OPS)
    depth = trial.suggest_int("depth", 1, 3)
    width = trial.suggest_int("width", 16, 32, step=16)
    return (op == "sep3") + depth / 3 + width / 32


def mixed_toy(trial):
    """Categorical, int (stepped and log) and float (log): a continuous space."""
    op = trial.suggest_categorical("op", OPS)
    depth = trial.suggest_int("depth", 1, 6)
    channels = trial.suggest_int("channels", 8, 128, log=True)
    lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return (op == "conv5") + depth / 6 - abs(channels - 64) / 128 - abs(lr - 0.01)


def conditional_toy(trial):
    """A define-by-run space with branches: the kernel exists for convolutions only, the ratio for sep convs."""
    op = trial.suggest_categorical("op", OPS)
    score = {"conv3": 0.5, "conv5": 0.6, "sep3": 0.8, "skip": 0.0}[op]
    if op in ("conv3", "conv5", "sep3"):
        score += trial.suggest_int("kernel", 1, 7, step=2) / 7
    if op == "sep3":
        score += trial.suggest_float("ratio", 0.0, 0.5, step=0.1)
    score += trial.suggest_int("depth", 1, 6) / 6
    score += -abs(trial.suggest_int("channels", 8, 256, log=True) - 96) / 256
    score += -abs(trial.suggest_float("lr", 1e-4, 1e-1, log=True) - 0.01)
    score += trial.suggest_float("drop", 0.0, 0.5) / 10
    return score


def run(sampler, objective, n_trials, directions=("maximize",), workers=1, study=None):
    """The ask/tell loop a search runs: ``workers`` trials asked before they are told; stop when exhausted."""
    study = study or optuna.create_study(directions=list(directions), sampler=sampler)
    done = len(study.get_trials(deepcopy=False))
    while done < n_trials and not exhausted(sampler, study):
        batch = [study.ask() for _ in range(min(workers, n_trials - done))]
        done += len(batch)
        for trial in batch:
            study.tell(trial, objective(trial))
    return study


def context(name, directions=("maximize",), **kw):
    options = {"population": 6} if name in ("evolution", "nsga2") else {}
    return StrategyContext(directions=list(directions), seed=0, options=options, **kw)


def _valid(trial, space):
    for name, dist in space.items():
        assert name in trial.params, (trial.number, name)
        assert dist._contains(dist.to_internal_repr(trial.params[name])), (trial.number, name, trial.params[name])


FINITE_SPACE = {"op": CategoricalDistribution(OPS), "depth": IntDistribution(1, 3),
                "width": IntDistribution(16, 32, step=16)}
MIXED_SPACE = {"op": CategoricalDistribution(OPS), "depth": IntDistribution(1, 6),
               "channels": IntDistribution(8, 128, log=True), "lr": FloatDistribution(1e-4, 1e-1, log=True)}


# -- every registered strategy ---------------------------------------------------------------------------------------


def test_builtin_strategies_registered():
    assert {"random", "grid", "tpe", "nsga2", "gp", "evolution"} <= set(STRATEGIES.names())
    for name, spec in STRATEGIES.items():
        assert spec.doc and "\n" not in spec.doc and any(ch.isdigit() for ch in spec.doc), name  # names its paper
    assert STRATEGIES.owner("tpe") == "nascore.strategies"


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_strategy_on_finite_space_with_two_workers(name):
    sampler = make_sampler(name, context(name, workers=2, grid=GRID))
    assert isinstance(sampler, optuna.samplers.BaseSampler)
    study = run(sampler, finite_toy, 16, workers=2)
    assert len(study.trials) == 16
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        _valid(trial, FINITE_SPACE)


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if n != "grid"])
def test_strategy_on_mixed_space(name):
    study = run(make_sampler(name, context(name)), mixed_toy, 20)
    assert len(study.trials) == 20
    for trial in study.trials:
        assert trial.state == TrialState.COMPLETE
        _valid(trial, MIXED_SPACE)


# -- lookup and errors -----------------------------------------------------------------------------------------------


def test_unknown_strategy_suggests_close_names():
    with pytest.raises(StrategyError, match=r"unknown strategy 'evolutoin'.*did you mean 'evolution'"):
        make_sampler("evolutoin")
    with pytest.raises(StrategyError, match="did you mean 'tpe'"):
        make_sampler("tpee")


def test_aliases():
    assert isinstance(make_sampler("nsga-ii", context("nsga2")), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("regularized_evolution"), RegularizedEvolutionSampler)
    assert isinstance(make_sampler("random_search"), optuna.samplers.RandomSampler)


def test_single_objective_strategy_with_two_objectives_is_a_clear_error():
    with pytest.raises(StrategyError) as info:
        make_sampler("evolution", StrategyContext(directions=["maximize", "minimize"]))
    message = str(info.value)
    assert "strategy 'evolution'" in message and "single-objective" in message and "2 objectives" in message
    assert "nsga2" in message and "tpe" in message  # the multi-objective ones are listed


def test_evolution_sampler_refuses_a_multi_objective_study():
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=RegularizedEvolutionSampler())
    with pytest.raises(ValueError, match="multi-objective"):
        study.ask()


def test_options_are_checked():
    with pytest.raises(StrategyError, match=r"strategy 'evolution': option 'populaton': unknown option.*did you "
                                            r"mean 'population'.*takes: population, sample_size"):
        make_sampler("evolution", StrategyContext(options={"populaton": 10}))
    with pytest.raises(StrategyError, match=r"option 'population': unknown option.*takes: none"):
        make_sampler("random", StrategyContext(options={"population": 10}))
    with pytest.raises(StrategyError, match=r"strategy 'nsga2': option 'population': got 1"):
        make_sampler("nsga2", StrategyContext(options={"population": 1}))
    with pytest.raises(StrategyError, match=r"option 'population': got '8' \(str\)"):
        make_sampler("evolution", StrategyContext(options={"population": "8"}))
    with pytest.raises(StrategyError, match=r"sample_size \(9\) must not exceed population \(4\)"):
        make_sampler("evolution", StrategyContext(options={"population": 4, "sample_size": 9}))
    sampler = make_sampler("evolution", StrategyContext(options={"population": 3}))  # tournament shrinks to fit
    assert (sampler.population, sampler.sample_size) == (3, 3)
    nsga2 = make_sampler("nsga2", StrategyContext(options={"population": 12}))
    assert nsga2._population_size == 12


def test_bad_context():
    with pytest.raises(StrategyError, match="direction 'up'"):
        make_sampler("random", StrategyContext(directions=["up"]))
    with pytest.raises(StrategyError, match="workers"):
        make_sampler("random", StrategyContext(workers=0))


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_third_party_strategy_plugin(fresh_plugins):
    class MyStrategies:
        @staticmethod
        @hookimpl
        def nascore_strategies():
            return [StrategySpec(name="qmc", make=lambda ctx: optuna.samplers.QMCSampler(seed=ctx.seed),
                                 doc="Sobol quasi-random search (Sobol 1967).", multi_objective=True)]

    fresh_plugins.register_plugin(MyStrategies(), name="my_strategies")
    assert STRATEGIES.owner("qmc") == "my_strategies"
    assert isinstance(make_sampler("qmc", StrategyContext(seed=1)), optuna.samplers.QMCSampler)


# -- grid ------------------------------------------------------------------------------------------------------------


ALL_POINTS = {tuple(p) for p in itertools.product(*GRID.values())}


def _points(study):
    return [tuple(t.params[k] for k in GRID) for t in study.trials]


def test_grid_enumerates_exactly_the_grid_under_ask_tell():
    sampler = make_sampler("grid", context("grid", grid=GRID))
    study = run(sampler, finite_toy, 1000)  # stops on exhaustion, not on the trial budget
    points = _points(study)
    assert len(points) == len(ALL_POINTS) == 24
    assert set(points) == ALL_POINTS
    assert exhausted(sampler, study)


def test_grid_stops_optimize():
    sampler = make_sampler("grid", context("grid", grid=GRID))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(finite_toy, n_trials=1000)
    assert sorted(_points(study)) == sorted(ALL_POINTS)


def test_grid_needs_a_finite_space():
    with pytest.raises(StrategyError, match="space has continuous parameters; grid needs choices or integer ranges"):
        make_sampler("grid", StrategyContext(grid=None))


def test_other_strategies_are_never_exhausted():
    sampler = make_sampler("random")
    assert not exhausted(sampler, run(sampler, finite_toy, 3))


# -- grid under ask/tell: the Optuna private it reads (plugins/strategies.py) ------------------------------------------


def test_in_optimize_loop_reads_optuna_private():
    """Fails loudly when Optuna moves ``Study._thread_local.in_optimize_loop``: then the grid strategy would either
    crash ask/tell searches or never stop ``study.optimize``."""
    from nascore_plugins.strategies import _in_optimize_loop

    study = optuna.create_study()
    seen = []
    study.optimize(lambda trial: seen.append(_in_optimize_loop(trial.study)) or 0.0, n_trials=2)
    assert seen == [True, True]
    assert _in_optimize_loop(study) is False
    trial = study.ask()
    assert _in_optimize_loop(study) is False
    study.tell(trial, 0.0)


def test_grid_under_ask_tell_survives_the_last_point_and_enqueued_trials():
    """Why the private is read instead of catching Study.stop's RuntimeError: under ask/tell the stock after_trial
    also runs, and reads the grid_id an enqueued trial (a retry) does not have."""
    sampler = make_sampler("grid", StrategyContext(directions=["maximize"], grid={"x": [0, 1]}))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    first = study.ask()
    first.suggest_categorical("x", [0, 1])
    study.enqueue_trial(first.params)
    retry = study.ask()
    retry.suggest_categorical("x", [0, 1])
    study.tell(first, state=optuna.trial.TrialState.FAIL)
    study.tell(retry, 1.0)                           # one grid point left, and an enqueued trial told: no KeyError
    last = study.ask()
    last.suggest_categorical("x", [0, 1])
    study.tell(last, 0.0)                            # the last point: no RuntimeError from Study.stop
    assert exhausted(study.sampler, study)


# -- NSGA-II ---------------------------------------------------------------------------------------------------------


def _dominates(a, b, directions):
    sign = [1 if d == "maximize" else -1 for d in directions]
    better_or_equal = all(s * x >= s * y for s, x, y in zip(sign, a, b))
    return better_or_equal and any(s * x > s * y for s, x, y in zip(sign, a, b))


def test_nsga2_leaves_a_non_dominated_pareto_set():
    directions = ["maximize", "minimize"]

    def accuracy_and_cost(trial):
        op = trial.suggest_categorical("op", OPS)
        depth = trial.suggest_int("depth", 1, 8)
        width = trial.suggest_int("width", 16, 128, step=16)
        accuracy = {"conv3": 0.7, "conv5": 0.75, "sep3": 0.72, "skip": 0.5}[op] + 0.02 * depth + width / 1000
        cost = {"conv3": 9, "conv5": 25, "sep3": 4, "skip": 0}[op] * depth * width
        return accuracy, cost

    sampler = make_sampler("nsga2", StrategyContext(directions=directions, seed=3, options={"population": 8}))
    study = run(sampler, accuracy_and_cost, 30, directions=directions)
    front = study.best_trials
    assert front
    for a, b in itertools.permutations(front, 2):
        assert not _dominates(a.values, b.values, directions)
    for member in front:
        assert not any(_dominates(t.values, member.values, directions) for t in study.trials)
    # every trial off the front is dominated by (or equal to) a member of it
    for t in study.trials:
        if t not in front:
            assert any(_dominates(m.values, t.values, directions) or m.values == t.values for m in front)


# -- regularized evolution -------------------------------------------------------------------------------------------


def _differences(child, parent):
    keys = set(child.params) | set(parent.params)
    return {k for k in keys if child.params.get(k, ...) != parent.params.get(k, ...)}


@pytest.mark.parametrize("objective", [mixed_toy, conditional_toy], ids=["fixed", "conditional"])
def test_evolution_children_mutate_one_decision_of_a_recent_parent(objective):
    population = 8
    sampler = RegularizedEvolutionSampler(population=population, sample_size=3, seed=1)
    study = run(sampler, objective, 60)
    trials = study.trials
    mutated_names = set()
    for trial in trials[:population]:
        assert "parent" not in trial.user_attrs  # warm-up: random
    for child in trials[population:]:
        parent_number = child.user_attrs["parent"]
        mutated = child.user_attrs["mutated"]
        assert child.system_attrs[PARENT_KEY] == parent_number and child.system_attrs[MUTATED_KEY] == mutated
        # aging: the parent is among the last `population` completed trials (sequential: the previous ones)
        assert child.number - population <= parent_number < child.number
        parent = trials[parent_number]
        diff = _differences(child, parent)
        assert mutated in diff, (child.number, mutated, child.params, parent.params)
        for name in diff - {mutated}:  # anything else that differs is a branch only one of them has
            assert (name in child.params) != (name in parent.params), (child.number, name)
        if objective is mixed_toy:
            assert diff == {mutated}
        mutated_names.add(mutated)
        for name, dist in child.distributions.items():
            assert dist._contains(dist.to_internal_repr(child.params[name]))
    assert len(mutated_names) >= 4  # the mutated decision is drawn among all of them


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_evolution_tournament_picks_the_best_by_direction(direction):
    population = 6  # sample_size == population: the parent is the best of the whole (aged) population
    sampler = RegularizedEvolutionSampler(population=population, sample_size=population, seed=2)
    study = run(sampler, mixed_toy, 30, directions=[direction])
    pick = max if direction == "maximize" else min
    for child in study.trials[population:]:
        window = study.trials[child.number - population:child.number]
        assert child.user_attrs["parent"] == pick(window, key=lambda t: t.value).number


def test_evolution_lineage_survives_a_new_sampler(tmp_path):
    """A trial asked through one sampler is sampled by another (another process, or a re-created sampler): the
    parent and the mutation come from the storage, not from the first sampler's memory or seed."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    first = RegularizedEvolutionSampler(population=5, sample_size=2, seed=4)
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize", sampler=first)
    run(first, mixed_toy, 5, study=study)
    asked = study.ask()  # the parent and the mutation are decided here ...
    parent_number, mutated = asked.user_attrs["parent"], asked.user_attrs["mutated"]

    study.sampler = RegularizedEvolutionSampler(population=5, sample_size=2, seed=99)  # ... and sampled elsewhere
    study.tell(asked, mixed_toy(asked))
    resumed = optuna.load_study(study_name="s", storage=storage)
    child = resumed.trials[-1]
    assert child.user_attrs == {"parent": parent_number, "mutated": mutated}
    assert child.system_attrs[PARENT_KEY] == parent_number and child.system_attrs[MUTATED_KEY] == mutated
    assert _differences(child, resumed.trials[parent_number]) == {mutated}


@pytest.mark.parametrize("journal", [False, True])
def test_evolution_records_attributes_through_optuna_privates(tmp_path, journal):
    """The one place the evolution sampler reaches into Optuna (``_record``: ``study._storage``, ``trial._trial_id``
    and the FrozenTrial a hook receives being the running Trial's): fails loudly when Optuna changes any of it."""
    from nascore_plugins.evolution import _record

    class Recording(optuna.samplers.RandomSampler):
        def before_trial(self, study, trial):
            _record(study, trial, system={"nascore:k": trial.number}, user={"u": [trial.number]})

    storage = (optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
               if journal else None)
    study = optuna.create_study(storage=storage, sampler=Recording())
    trial = study.ask()
    assert trial.user_attrs == {"u": [0]}                      # seen by the running trial at once
    assert study.get_trials(deepcopy=False)[0].system_attrs["nascore:k"] == 0   # and by the storage
    study.tell(trial, 1.0)
    done = study.trials[0]
    assert done.user_attrs == {"u": [0]} and done.system_attrs["nascore:k"] == 0


def test_evolution_keeps_parent_values_only_where_the_distribution_takes_them():
    from nascore_plugins.evolution import _contains

    assert _contains(CategoricalDistribution(["a", "b"]), "b") and not _contains(CategoricalDistribution(["a"]), "b")
    assert _contains(IntDistribution(2, 10, step=2), 6) and not _contains(IntDistribution(2, 10, step=2), 5)
    assert not _contains(IntDistribution(2, 10), 11) and _contains(IntDistribution(1, 64, log=True), 64)
    assert _contains(FloatDistribution(0.0, 1.0, step=0.25), 0.75)
    assert not _contains(FloatDistribution(0.0, 1.0, step=0.25), 0.7)
    assert _contains(FloatDistribution(1e-4, 1e-1, log=True), 1e-2) and not _contains(FloatDistribution(0, 1), 2.0)
    assert not _contains(FloatDistribution(0.0, 1.0), "x")


def test_evolution_beats_random_search():
    """On a needle-shaped toy (8 decisions, one right value each), aging evolution finds more than random."""
    target = ["b", "d", "a", "c", "a", "b", "d", "c"]

    def matches(trial):
        score = sum(trial.suggest_categorical(f"op{i}", ["a", "b", "c", "d"]) == want
                    for i, want in enumerate(target))
        return score + (4 - abs(trial.suggest_int("depth", 0, 9) - 7)) / 4

    def best(name, seed):
        ctx = StrategyContext(directions=["maximize"], seed=seed,
                              options={"population": 20, "sample_size": 5} if name == "evolution" else {})
        return run(make_sampler(name, ctx), matches, 150).best_value

    seeds = range(5)
    evolution = [best("evolution", s) for s in seeds]
    random = [best("random", s) for s in seeds]
    assert statistics.median(evolution) >= statistics.median(random) + 1.5, (evolution, random)
    assert min(evolution) > statistics.median(random), (evolution, random)
