"""A run's Optuna study: opened (or created) with its sampler and pruner, and made whole again after a crash.

The driver is the study's single writer. It keeps the storage object it created (:meth:`RunDir.storage`), so a trial
known only by its number (one left RUNNING by a killed driver, or by a sampler that raised inside ``ask``) is
updated through the public storage API, never through the study's private attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nascore.errors import RunError
from nascore.nas.book import Kind, State, TrialBook, TrialRecord


def record_of(trial: Any) -> TrialRecord:
    """The book's view of a stored trial (an ``optuna.trial.FrozenTrial``)."""
    attrs = trial.user_attrs
    return TrialRecord(number=trial.number, state=State[trial.state.name], kind=Kind.of(attrs.get("kind")),
                       values=trial.values, params=trial.params, digest=attrs.get("hash", ""),
                       requeued=bool(attrs.get("requeued")))


def make_pruner(config: Any):
    """Optuna's pruner for ``config``: Hyperband, ASHA or median on a single val_acc objective, else none."""
    import optuna

    if len(config.objectives) > 1 or config.objectives[0] != "val_acc" or config.pruner == "none":
        if config.pruner not in ("none", "hyperband") and len(config.objectives) > 1:
            raise RunError(f"pruner {config.pruner!r} needs a single objective; Optuna prunes only those")
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.epochs)
    if config.pruner == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


class RunStudy:
    """The study and the storage object behind it."""

    def __init__(self, study: Any, storage: Any):
        self.study = study
        self.storage = storage
        self._study_id = storage.get_study_id_from_name(study.study_name)

    def records(self) -> list[TrialRecord]:
        return [record_of(t) for t in self.study.get_trials(deepcopy=False)]

    def fail_stored(self, number: int, reason: str, kind: Kind | None = None) -> None:
        """Fail RUNNING trial ``number``, known only from storage (no live Trial object), recording why."""
        import optuna

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        for key, value in (("kind", kind.value if kind is not None else None), ("reason", reason)):
            if value is not None:
                self.storage.set_trial_user_attr(trial_id, key, value)
        self.study.tell(number, state=optuna.trial.TrialState.FAIL)

    def fail_running(self, reason: str, held: set[int]) -> None:
        """Trials Optuna left RUNNING that no worker holds (``held``: the trial numbers workers hold): failed."""
        import optuna

        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.number not in held:
                self.fail_stored(t.number, reason)

    def recover(self, book: TrialBook, say: Callable[[str], None]) -> None:
        """After a crash: in-flight trials become FAIL(interrupted) and the parameters of those that were training
        are queued again; ``book`` learns which architectures are trained already."""
        records = self.records()
        book.restore(records)
        proxies = {t.number: {k: t.user_attrs[k] for k in ("proxy", "proxy_name") if k in t.user_attrs}
                   for t in self.study.get_trials(deepcopy=False)}
        for r in records:
            if r.state is State.RUNNING:
                self.fail_stored(r.number, "the search stopped while it ran", kind=Kind.INTERRUPTED)
                if r.kind is Kind.TRAINED:   # it was training; one still being sampled had no complete architecture
                    # (a warm start's proxy score, which chose it for training, goes with it)
                    self.study.enqueue_trial(dict(r.params), user_attrs={"retry_of": r.number,
                                                                         **proxies.get(r.number, {})},
                                             skip_if_exists=False)
                    say(f"[trial {r.number}] was interrupted; its parameters run again")


def open_study(run_dir: Any, space: Any, config: Any) -> RunStudy:
    """Create the run's study, or load it on resume, with the strategy's sampler and the pruner.

    The study is the one the run records (``RunDir.study_name``: run.json, never the folder's name). A new run's
    study must not exist yet; a resumed run's must, unless the run's own study.db holds no study at all (killed
    before its study was made). Anything else is a RunError: a resume never starts a second study beside the
    first."""
    import optuna

    from nascore.nas.rundir import storage_errors
    from nascore.nas.strategies import StrategyContext, make_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = run_dir.storage(config)
    url = run_dir.storage_url(config)
    stored = run_dir.stored_study_name()
    name = stored or run_dir.name
    if run_dir.fresh or (not config.storage and not _study_names(storage, url)):
        with storage_errors(url):
            try:
                study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(),
                                            pruner=make_pruner(config), directions=config.directions)
            except optuna.exceptions.DuplicatedStudyError:
                raise RunError(f"storage {url} already holds a study named {name!r}; a new run needs its own "
                               "(another run's study is never shared)", where=str(run_dir.path)) from None
    else:
        name = run_dir.study_name(storage, config)
        with storage_errors(url):
            study = optuna.load_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(),
                                      pruner=make_pruner(config))
        if list(study.directions) != [optuna.study.StudyDirection.MAXIMIZE if d == "maximize" else
                                      optuna.study.StudyDirection.MINIMIZE for d in config.directions]:
            raise RunError(f"study {name!r} has other objectives' directions than config.yaml; expected the run's "
                           "own study", where=str(run_dir.path))
        run_dir.remember_study(name)
    # On resume the seed moves on by the trials already asked, so the sampler does not replay its first
    # proposals (they would only come back as duplicates).
    with storage_errors(url, "cannot be read"):
        seed = config.seed + len(study.get_trials(deepcopy=False))
    context = StrategyContext(directions=config.directions, seed=seed, workers=config.workers,
                              grid=space.grid(), options=dict(config.strategy_options))
    study.sampler = make_sampler(config.strategy, context)
    return RunStudy(study, storage)


def _study_names(storage: Any, url: str) -> list[str]:
    import optuna

    from nascore.nas.rundir import storage_errors

    with storage_errors(url):
        return optuna.get_all_study_names(storage)


__all__ = ["RunStudy", "make_pruner", "open_study", "record_of"]
