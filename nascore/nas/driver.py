"""Run an architecture search: Optuna asks, Ray trains, the run directory remembers.

The driver is the study's single writer (SQLite, journal or PostgreSQL all work) and drives the sampler through
ask/tell, the way Ray Tune's OptunaSearch adapter does, but without Tune's per-trial actor and experiment-state
machinery: each worker slot is one long-lived Ray actor (``TrialWorker``) that trains one trial at a time, epoch by
epoch. Between epochs the driver reports to Optuna and asks its pruner (Hyperband / ASHA / median), so weak
candidates stop early. Per-trial overhead is a few Ray calls (see BENCHMARKS.md).

Every sample is validated and checked against hard constraints (params, MACs on the analysis; latency measured on
the trial's device) before any training. Structurally identical samples (canonical hash: isomorphic cells too)
are trained once and the others take its result. A failure of any kind (invalid sample, NaN loss, out of memory,
a worker process dying) is recorded with its reason and the search goes on.

Warm start (``warm_start_proxy``, ``warm_start_candidates`` M, ``warm_start_top`` k): before any training the
driver asks M trials and the workers score each sampled architecture with an evaluator that trains nothing (a
zero-cost proxy on the initial weights its trial would train from, or the supernet's inherited weights), the best
k are trained as ordinary trials (they count towards ``trials``; a larger budget goes on with the strategy
afterwards) and the others are told as FAIL of kind ``scored`` as soon as they fall out of the best k, so no
strategy learns from them and none becomes the best. Every scored trial keeps its score as the user
attributes ``proxy`` and ``proxy_name``; the study's ``warm_start`` attribute marks the phase done, so a resume
skips it.

Resume (``--resume RUN``) after Ctrl-C or SIGKILL: finished trials stay, none runs twice, trials that were in flight
are marked interrupted and their exact parameters run again.

The parts: :mod:`nascore.nas.recovery` opens the study and recovers it after a crash; :mod:`nascore.nas.book` keeps
the trial kinds, de-duplication, budget and progress (pure Python); :mod:`nascore.nas.cluster` joins Ray (or fails in
seconds) and :mod:`nascore.nas.pool` owns the worker actors. :class:`Search` here only asks, dispatches and tells.
"""

from __future__ import annotations

import bisect
import math
import reprlib
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nascore.errors import EvaluatorError, NascoreError, ParamError, RunError, StrategyError, plugin_code, raised
from nascore.io.atomic import atomic_write_text
from nascore.nas.book import Budget, Dedup, Kind, TrialBook, TrialRecord, best, budget_used, counts, status_line
from nascore.nas.config import SearchConfig
from nascore.nas.cluster import probe_address
from nascore.nas.pool import ActorPool, Slot, SlotState, StepFailed
from nascore.nas.recovery import RunStudy, open_study, record_of
from nascore.nas.rundir import RunDir
from nascore.nas.shutdown import signals_held
from nascore.nas.space import SearchSpace
from nascore.nas.tracking import NullTracker, Tracker, open_tracker, progress_of
from nascore.training.data import DataShape, check_fits


def _print(line: str) -> None:
    print(line, flush=True)


def _one_or_many(values: Sequence[float]) -> float | Sequence[float]:
    """What ``study.tell`` takes: a single objective's value, or the list of several."""
    return values if len(values) > 1 else values[0]


@dataclass
class _Job:
    """A trial on a worker slot: when it started, what is known of it, its epochs so far."""

    trial: Any                   # the live optuna.trial.Trial
    started: float
    info: dict[str, Any]         # params, macs, hash; latency_ms and device once the worker started it
    epoch: int = 0
    prepared: tuple[Any, Any, str] | None = None   # a warm-start candidate's (graph, analysis, hash) while scored
    history: list[dict[str, Any]] = field(default_factory=list)


class Search:
    """One search in one run directory. ``Search(...).run()`` returns the run directory's path."""

    def __init__(self, run: RunDir, space: SearchSpace, config: SearchConfig,
                 progress: Callable[[str], None] | None = _print):
        self.run_dir = run
        self.space = space
        self.config = config
        self.progress = progress
        self.say = progress or (lambda line: None)
        self.book = TrialBook()
        self.pool = ActorPool.for_search(config, self.say)
        self.store: RunStudy | None = None
        self.study = None
        self.data_shape: DataShape | None = None   # name, input shape and classes of the data set
        self._published: list[int] = []
        self._dirty = False                        # a trial finished since the summary was last written
        self.epochs = config.epochs                # per trial: the evaluator's own count when it fixes one
        self._queued: list[tuple[Any, ...]] = []   # warm start's best: (trial, graph, analysis, hash) to train
        self._warm_options: dict[str, Any] = {}     # the warm-start scorer's options, resolved
        self.tracker: Tracker = NullTracker()      # TensorBoard once the run starts (config.tensorboard)

    # the run -------------------------------------------------------------------------------------------------------

    def run(self) -> Path:
        from nascore.nas.evaluators import EVALUATORS
        from nascore.training.data import load_dataset

        # an unknown evaluator, a bad option or one that does not fit the space fails here, not in every worker
        evaluator = EVALUATORS.get(self.config.evaluator)
        self._check_fits(evaluator, evaluator.resolve(self.config.evaluator_options))
        unserved = [o for o in self.config.objectives
                    if evaluator.objectives is not None and o not in evaluator.objectives]
        if unserved:
            raise EvaluatorError(f"cannot serve objective {', '.join(unserved)}; it serves "
                                 f"{', '.join(evaluator.objectives)}", where=f"evaluator {evaluator.name!r}")
        self.epochs = evaluator.epochs or self.config.epochs
        warm = self._warm_start_spec(evaluator)
        splits = load_dataset(self.config.data, self.config.data_root, **self.config.data_params)
        self.data_shape = SimpleNamespace(name=self.config.data, input_shape=tuple(splits.input_shape),
                                          num_classes=splits.num_classes)
        del splits                 # the workers load their own; only its shape is needed here
        self.run_dir.lock()
        self.run_dir.remove_leftovers()
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self.store = open_study(self.run_dir, self.space, self.config)
            self.study = self.store.study
            self.study.set_user_attr("space", self.space.name)
            self.store.recover(self.book, self.say)
            self.pool.open()
            signal.signal(signal.SIGTERM, self._on_sigterm)   # again: ray.init installs its own (a bare sys.exit)
            self.say(f"search {self.run_dir.name}: {self.config.trials} trials of {self.epochs} epochs, "
                     f"{self.config.workers} worker(s), strategy {self.config.strategy}, objectives "
                     f"{', '.join(self.config.objectives)}")
            self.tracker = open_tracker(self.config.tensorboard, self.run_dir.path / "tensorboard", self.say)
            if warm is not None:
                self._warm_start(warm)
            self._loop()
            self._write_summary("finished")
            self.say(self._status_line(final=True))
        except KeyboardInterrupt:
            self._finalise("interrupted")
            self.say(f"interrupted: resume with `nascore search --resume {self.run_dir.path}`")
            raise
        except BaseException:
            self._finalise("crashed")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            try:                       # a further Ctrl-C may cut Ray's shutdown short: the records are whole by now
                self.tracker.close()
                self.pool.close()
            finally:
                self.run_dir.unlock()
        return self.run_dir.path

    def _on_sigterm(self, signum, frame) -> None:
        raise KeyboardInterrupt

    def _finalise(self, state: str) -> None:
        """After a stop: the trials in flight become interrupted (a training one's parameters queued to run again,
        as a resume after kill -9 does) and summary.json says ``state``. SIGINT and SIGTERM are held meanwhile
        (:func:`nascore.nas.shutdown.signals_held`): a second Ctrl-C cannot leave the run without a summary or with
        trials RUNNING; the search is stopping anyway, so what arrived is dropped."""
        with signals_held():
            if self.store is not None:
                try:
                    self.store.recover(TrialBook(), self.say)
                except Exception as exc:  # noqa: BLE001 - a broken store: the resume marks them instead
                    self.say(f"trials in flight left for the resume to mark: {raised(None, exc)}")
            self._write_summary(state)

    # warm start: score M samples with a proxy, train the best k -------------------------------------------------------

    def _warm_start_spec(self, evaluator: Any) -> Any:
        """The warm-start proxy's EvaluatorSpec (None without warm start); a ParamError naming the setting when it
        is not an evaluator that scores without training, or the search's own evaluator does not train."""
        from nascore.nas.evaluators import EVALUATORS

        name = self.config.warm_start_proxy
        if name is None:
            return None
        where = "search: parameter 'warm_start_proxy'"
        if evaluator.epochs == 1:
            raise ParamError(f"got {name!r} with evaluator {evaluator.name!r}, which trains nothing; expected a "
                             f"training evaluator (train) to train the best warm_start_top", where=where)
        try:
            spec = EVALUATORS.get(name)
        except NascoreError as err:
            raise ParamError(str(err), where=where) from None
        if spec.epochs != 1:
            raise ParamError(f"got {name!r}, which trains; expected an evaluator that scores without training "
                             f"(a zero-cost proxy such as naswot, or supernet; `nascore evaluators`)", where=where)
        try:
            self._warm_options = spec.resolve(self.config.warm_start_options)
        except EvaluatorError as err:
            raise ParamError(err.message, where=f"search: parameter 'warm_start_options': {err.where}") from None
        self._check_fits(spec, self._warm_options)
        return spec

    def _check_fits(self, spec: Any, options: dict[str, Any]) -> None:
        """The evaluator's own check that it can serve this space with these options (a supernet trained on it)."""
        if spec.check is not None:
            with plugin_code("its check", EvaluatorError, where=f"evaluator {spec.name!r}"):
                spec.check(options, self.space)

    def _warm_start(self, spec: Any) -> None:
        """Ask ``warm_start_candidates`` trials and have the workers score each with ``spec`` (an evaluator that
        trains nothing); tell each as scored only (FAIL, kind ``scored``) once it falls out of the best
        ``warm_start_top``, and queue the best to train. Done once per run: the study's ``warm_start`` attribute
        records it, and a resume skips it (the queued trials it left running are run again by the recovery, like
        any interrupted trial; candidates still being scored become interrupted)."""
        from nascore.nas.strategies import exhausted

        done = self.study.user_attrs.get("warm_start")
        if isinstance(done, dict) and done.get("done"):
            return
        wanted, top = self.config.warm_start_candidates, self.config.warm_start_top
        started = time.perf_counter()
        # only the best `top` so far stay RUNNING: a candidate is told scored-only the moment it drops out, since
        # Optuna's cached storage re-reads every RUNNING trial on each ask (all M kept open made the phase quadratic)
        leaders: list[tuple[float, int, Any, tuple[Any, Any, str]]] = []   # (-score, number, trial, prepared)
        scored = 0
        seen: dict[str, int] = {}
        misses = Budget(wanted)
        sampling = True
        while True:
            while sampling and scored + len(self.pool.busy()) < wanted:
                free = self.pool.idle_slot()
                if free is None:
                    break
                if exhausted(self.study.sampler, self.study):
                    sampling = False
                    self.say("the strategy has no more architectures to propose")
                    break
                candidate = self._candidate(seen)
                if candidate is None:
                    if misses.missed():
                        sampling = False
                        self.say(f"warm start: {misses.miss_limit} samples in a row were invalid, rejected or "
                                 f"duplicates; going on with {scored + len(self.pool.busy())}")
                    continue
                misses.launched()
                self._score(free, spec, *candidate)
            if not self.pool.busy() and not (sampling and scored < wanted and self.pool.placing()):
                break
            slot = self.pool.wait()    # None: a worker started, and scores a candidate next time round
            if slot is None:
                continue
            trial, prepared, value = self._scored(slot, spec)
            scored += 1
            if value is None:          # the evaluator could not score it: its reason is set already
                self._score_only(trial, "")
                continue
            bisect.insort(leaders, (-value, trial.number, trial, prepared), key=lambda entry: entry[:2])
            if len(leaders) > top:
                dropped, _, trial, _ = leaders.pop()
                self._score_only(trial, f"scored only: {spec.name} {-dropped:.4g} not in the top {top} of the "
                                        f"first {scored} scored")
        winners = [(trial, prepared) for _, _, trial, prepared in leaders]
        for trial, prepared in winners:
            trial.set_user_attr("kind", Kind.TRAINED.value)   # so a resume runs it again if it never finished
            self.book.start(prepared[2], trial.number)        # a later sample of it waits for its result
            self._queued.append((trial, *prepared))
        numbers = [trial.number for trial, _ in winners]
        self.study.set_user_attr("warm_start", {"done": True, "proxy": spec.name, "scored": scored,
                                                "top": numbers})
        self._dirty = True
        self.say(f"warm start: scored {scored} candidates with {spec.name} in "
                 f"{time.perf_counter() - started:.1f} s; training the best {len(numbers)} (trials "
                 f"{', '.join(map(str, numbers)) or 'none'})")

    def _candidate(self, seen: dict[str, int]) -> tuple[Any, tuple[Any, Any, str]] | None:
        """A new warm-start candidate: its trial and ``(graph, analysis, hash)``; None when the sample ended early
        (invalid, rejected, or the same architecture as a candidate already scored)."""
        trial = self._ask()
        prepared = self._prepare(trial)
        if prepared is None:
            return None
        if prepared[2] in seen:
            trial.set_user_attr("duplicate_of", seen[prepared[2]])
            self._end_early(trial, Kind.DUPLICATE, f"same architecture as trial {seen[prepared[2]]}, scored once")
            return None
        seen[prepared[2]] = trial.number
        return trial, prepared

    def _score(self, slot: Slot, spec: Any, trial: Any, prepared: tuple[Any, Any, str]) -> None:
        """Have ``slot``'s worker score ``trial``'s architecture with ``spec``, built as the trial would train it
        (same seed, so the same initial weights)."""
        trial.set_user_attr("proxy_name", spec.name)
        train = {"seed": self.config.seed + trial.number, **self.config.train, "epochs": self.epochs}
        job = _Job(trial, info={}, started=time.perf_counter(), prepared=prepared)
        self.pool.score(slot, job, prepared[0].to_dict(), train, spec.name, self._warm_options)

    def _scored(self, slot: Slot, spec: Any) -> tuple[Any, tuple[Any, Any, str], float | None]:
        """A worker's score, recorded as its trial's ``proxy``; None (and the trial's ``reason``) when the evaluator
        could not score it or the worker failed (a dead worker is replaced by the pool)."""
        job = slot.job
        try:
            result = self.pool.result(slot)
        except StepFailed as failure:
            result = {"reason": failure.reason}
        self.pool.release(slot)
        if "score" not in result:
            job.trial.set_user_attr("reason", f"scored only: the {spec.name} proxy failed: {result['reason']}")
            return job.trial, job.prepared, None
        job.trial.set_user_attr("proxy", result["score"])
        return job.trial, job.prepared, result["score"]

    def _score_only(self, trial: Any, reason: str) -> None:
        """Tell a warm-start candidate that will not be trained: FAIL of kind ``scored``, so no strategy learns from
        it and none makes it the best; a reason set already (the proxy failed) is kept."""
        import optuna

        trial.set_user_attr("kind", Kind.SCORED.value)
        trial.set_user_attr("reason", trial.user_attrs.get("reason") or reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _loop(self) -> None:
        """Keep every free slot busy while the budget lasts; advance whichever slot's step is done."""
        from nascore.nas.strategies import exhausted

        budget = Budget(self.config.trials, budget_used(self.store.records()))
        sampling = True
        while True:
            while sampling and budget.has_room(len(self.pool.busy())):
                free = self.pool.idle_slot()
                if free is None:
                    break
                if not self._queued and exhausted(self.study.sampler, self.study):
                    sampling = False
                    self.say("the strategy has no more architectures to propose")
                    break
                if self._launch(free):
                    budget.launched()
                elif budget.missed():
                    sampling = False
                    self.say(f"stopping: {budget.miss_limit} samples in a row were invalid, rejected or duplicates")
            if self._dirty:            # after the free slots got new work, so no worker waits on bookkeeping
                self._publish()
            if not self.pool.busy() and not (sampling and budget.has_room(0) and self.pool.placing()):
                break                  # (with budget left and workers still starting, wait for one of them)
            slot = self.pool.wait()    # None: a worker started, and takes a trial next time round
            if slot is not None and self._advance(slot):
                budget.spend()

    # one trial -----------------------------------------------------------------------------------------------------

    def _launch(self, slot: Slot) -> bool:
        """Start a trial on ``slot``: the next one the warm start queued, else a new one asked for; False when it
        ended before training (invalid, rejected, duplicate)."""
        if self._queued:
            return self._start(slot, *self._queued.pop(0))
        trial = self._ask()
        prepared = self._prepare(trial)
        return prepared is not None and self._start(slot, trial, *prepared)

    def _ask(self) -> Any:
        try:
            return self.study.ask()
        except Exception as exc:  # noqa: BLE001 - the sampler (a plugin) failed: end cleanly, saying which
            held = {job.trial.number for job in self.pool.jobs()} | {q[0].number for q in self._queued}
            self.store.fail_running(f"the sampler raised {type(exc).__name__}", held)
            raise StrategyError(raised("its sampler", exc),
                                where=f"strategy {self.config.strategy!r}") from None

    def _prepare(self, trial: Any) -> tuple[Any, Any, str] | None:
        """Sample ``trial``'s architecture and check it: ``(graph, analysis, hash)`` of one to train, or None when
        the trial ended here (invalid, rejected, or a duplicate that copies or waits for another's result)."""
        import optuna

        from nascore.graph.hashing import structural_hash

        try:
            graph = self.space.sample(trial)
            check_fits(graph, self.data_shape, where=f"{self.space.source}")
        except RunError:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except NascoreError as err:
            return self._end_early(trial, Kind.INVALID, str(err)) or None
        except Exception as exc:  # noqa: BLE001 - suggest_* calls reach the sampler, a plugin
            trial.set_user_attr("reason", raised("the sampler", exc))
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise StrategyError(raised("its sampler", exc),
                                where=f"strategy {self.config.strategy!r}") from None
        analysis = graph.analyse()
        trial.set_user_attr("params", analysis.params)
        trial.set_user_attr("macs", analysis.macs)
        limits = self.config.constraints
        for key, value in (("max_params", analysis.params), ("max_macs", analysis.macs)):
            if key in limits and value > limits[key]:
                return self._end_early(trial, Kind.REJECTED,
                                       f"{key[4:]} {value:,} > {key} {limits[key]:,.0f}") or None
        digest = structural_hash(graph)
        trial.set_user_attr("hash", digest)
        verdict = self.book.verdict(digest)
        if verdict.action is Dedup.COPY:
            return self._copy_result(trial, verdict.of) or None
        if verdict.action is Dedup.WAIT:
            trial.set_user_attr("kind", Kind.DUPLICATE.value)
            trial.set_user_attr("duplicate_of", verdict.of)
            self.book.wait(digest, trial)
            return None
        return graph, analysis, digest

    def _start(self, slot: Slot, trial: Any, graph: Any, analysis: Any, digest: str) -> bool:
        """Train ``trial``'s checked architecture on ``slot``."""
        self.book.start(digest, trial.number)
        trial.set_user_attr("kind", Kind.TRAINED.value)
        trial.set_user_attr("node", slot.node)   # where it trains: Ray node id and IP, worker pid
        atomic_write_text(self.run_dir.trial_dir(trial.number) / "graph.yaml", graph.to_yaml())
        train = {"seed": self.config.seed + trial.number, **self.config.train, "epochs": self.epochs}
        job = _Job(trial, info={"params": analysis.params, "macs": analysis.macs, "hash": digest},
                   started=time.perf_counter())
        limits = self.config.constraints
        self.pool.start(slot, job, graph.to_dict(), train, limits.get("max_latency_ms"),
                        "latency_ms" in self.config.objectives)
        return True

    def _advance(self, slot: Slot) -> bool:
        """Handle the result of ``slot``'s current step; True when a budgeted trial finished."""
        job = slot.job
        try:
            result = self.pool.result(slot)
        except StepFailed as failure:
            return self._fail(slot, failure.reason, retry=failure.worker_died)
        if slot.state is SlotState.STARTING:
            job.info.update(result)
            job.trial.set_user_attr("latency_ms", result["latency_ms"])
            job.trial.set_user_attr("device", result.get("device"))
            if result.get("rejected"):
                self.pool.release(slot)
                self._end_early(job.trial, Kind.REJECTED, result["rejected"], keep_pending=False)
                return False
            return self._next_epoch(slot)
        if slot.state is SlotState.TRAINING:
            return self._after_epoch(slot, result)
        return self._complete(slot, result)

    def _next_epoch(self, slot: Slot) -> bool:
        slot.job.epoch += 1
        self.pool.train_epoch(slot)
        return False

    def _after_epoch(self, slot: Slot, metrics: dict[str, Any]) -> bool:
        import optuna

        job = slot.job
        trial = job.trial
        accuracy = metrics.get("val_acc") if isinstance(metrics, dict) else None
        if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or not math.isfinite(accuracy):
            return self._fail(slot, f"the {self.config.evaluator!r} evaluator reported val_acc="
                                    f"{reprlib.repr(accuracy)} after epoch {job.epoch}; expected a finite number")
        job.history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        self.tracker.trial_epoch(trial.number, job.epoch, job.history[-1])
        trial.set_user_attr("history", job.history)
        if isinstance(metrics.get("proxy_name"), str) and job.epoch == 1:   # a proxy evaluator names its score
            trial.set_user_attr("proxy_name", metrics["proxy_name"])
            trial.set_user_attr("proxy", float(metrics["val_acc"]))
        if len(self.config.objectives) == 1:
            trial.report(float(metrics["val_acc"]), job.epoch)
            if job.epoch < self.epochs and trial.should_prune():
                trial.set_user_attr("reason", f"pruned after epoch {job.epoch}")
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                self._settle_duplicates(job.info["hash"], optuna.trial.TrialState.PRUNED, None)
                self._dirty = True
                self._event(f"[trial {trial.number}] pruned after epoch {job.epoch}: val_acc "
                            f"{metrics['val_acc']:.4f}")
                self.tracker.trial_end(trial.number, "pruned", {})
                self.pool.abandon(slot)
                return True
        if job.epoch < self.epochs:
            return self._next_epoch(slot)
        self.pool.finish(slot)
        return False

    def _complete(self, slot: Slot, result: dict[str, Any]) -> bool:
        import optuna

        job = slot.job
        trial, info = job.trial, job.info
        self.run_dir.write_atomic_bytes(self.run_dir.trial_dir(trial.number) / "model.safetensors",
                                        result["weights"])
        last = job.history[-1]
        metrics = {"val_acc": float(last["val_acc"]), "test_acc": float(result["test_acc"]),
                   "params": float(info["params"]), "macs": float(info["macs"]),
                   "latency_ms": float(info["latency_ms"])}
        values = [metrics[o] for o in self.config.objectives]
        bad = [f"{o}={v}" for o, v in zip(self.config.objectives, values) if not math.isfinite(v)]
        if bad:
            return self._fail(slot, f"non-finite objective {', '.join(bad)}; the trial's result cannot be ranked")
        trial.set_user_attr("test_acc", metrics["test_acc"])
        trial.set_user_attr("seconds", time.perf_counter() - job.started)
        self.study.tell(trial, _one_or_many(values))
        self.book.completed(info["hash"], trial.number)
        self._settle_duplicates(info["hash"], optuna.trial.TrialState.COMPLETE, values)
        self.tracker.trial_end(trial.number, "complete", metrics)
        self.pool.release(slot)
        self._dirty = True
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._event(f"[trial {trial.number}] complete: {shown} ({time.perf_counter() - job.started:.1f} s)")
        return True

    def _fail(self, slot: Slot, reason: str, retry: bool = False) -> bool:
        import optuna

        job = slot.job
        trial = job.trial
        retries = int(trial.user_attrs.get("retries", 0))
        requeued = retry and retries < self.config.max_retries
        trial.set_user_attr("kind", Kind.FAILED.value)
        trial.set_user_attr("reason", reason)
        if requeued:   # the retry takes its place in the budget (TrialRecord.requeued), so it runs however late
            trial.set_user_attr("requeued", True)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self._settle_duplicates(job.info.get("hash", ""), optuna.trial.TrialState.FAIL, None)
        if requeued:
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1},
                                     skip_if_exists=False)
            reason += " (queued again)"
        self.pool.release(slot)
        self._dirty = True
        self.tracker.trial_end(trial.number, "failed", {})
        self._event(f"[trial {trial.number}] failed: {reason}")
        return not requeued

    def _end_early(self, trial, kind: Kind, reason: str, keep_pending: bool = True) -> bool:
        import optuna

        trial.set_user_attr("kind", kind.value)
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if not keep_pending:
            self._settle_duplicates(trial.user_attrs.get("hash", ""), optuna.trial.TrialState.FAIL, None,
                                    reason=reason)
        self.say(f"[trial {trial.number}] {kind.value}: {reason}")
        return False

    def _copy_result(self, trial, owner: int) -> bool:
        """An architecture trained before: take its values instead of training it again."""
        source = self.study.get_trials(deepcopy=False)[owner]
        trial.set_user_attr("kind", Kind.DUPLICATE.value)
        trial.set_user_attr("duplicate_of", owner)
        self.study.tell(trial, _one_or_many(source.values))
        self.say(f"[trial {trial.number}] same architecture as trial {owner}: result reused")
        return False

    def _settle_duplicates(self, digest: str, state, values, reason: str | None = None) -> None:
        """The trial training ``digest`` ended in ``state``: the duplicates waiting for it end alike."""
        import optuna

        for waiting in self.book.settle(digest):
            if state == optuna.trial.TrialState.COMPLETE:
                self.study.tell(waiting, _one_or_many(values))
            else:
                waiting.set_user_attr("reason", reason or "the trial it duplicates did not complete")
                self.study.tell(waiting, state=state)

    # reporting -----------------------------------------------------------------------------------------------------

    def _standing(self) -> tuple[dict[str, int], list[TrialRecord]]:
        """Counts per outcome, and the best trial (one objective) or the Pareto set (several)."""
        records = self.store.records()
        front = [record_of(t) for t in self.study.best_trials] if len(self.config.objectives) > 1 else ()
        return counts(records), best(records, self.config.directions, front)

    def _publish(self) -> None:
        self._dirty = False
        standing = self._standing()
        numbers = [r.number for r in standing[1]]
        if numbers and numbers != self._published:   # copy files only when the best (or the front) changed
            self.run_dir.publish("best" if len(self.config.objectives) == 1 else "pareto", numbers)
            self._published = numbers
        self._write_summary("running", standing)
        self.tracker.search_progress(*progress_of(*standing, self.config.objectives, self.config.directions))

    def _event(self, line: str) -> None:
        """A finished trial: its line and the search's progress (computed only when someone is listening)."""
        if self.progress is not None:
            self.progress(f"{line} | {self._status_line()}")

    def _status_line(self, final: bool = False) -> str:
        tally, top = self._standing()
        return status_line(tally, top, self.config.trials, self.config.objectives, final=final)

    def _scores(self) -> dict[str, Any]:
        """What the numbers mean beyond accuracy: ``val_acc_is`` (a proxy evaluator's val_acc is its score, not an
        accuracy) and ``warm_start`` (its proxy, how many it scored, the trials it chose)."""
        from nascore.nas.evaluators import EVALUATORS

        found: dict[str, Any] = {}
        if EVALUATORS.get(self.config.evaluator).epochs == 1:
            found["val_acc_is"] = f"the {self.config.evaluator} score (no training)"
        warm = self.study.user_attrs.get("warm_start")
        if isinstance(warm, dict):
            found["warm_start"] = warm
        return found

    def _write_summary(self, state: str, standing: tuple[dict[str, int], list[TrialRecord]] | None = None) -> None:
        if self.study is None:
            return
        tally, top = standing or self._standing()
        summary = {"run": self.run_dir.name, "state": state, "space": self.space.name,
                   "objectives": self.config.objectives, "directions": self.config.directions,
                   "evaluator": self.config.evaluator, **self._scores(),
                   "counts": tally, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   ("best" if len(self.config.objectives) == 1 else "pareto"): [
                       {"trial": r.number, "values": r.values, "params": r.params,
                        "graph": str(self.run_dir.trial_dir(r.number) / "graph.yaml")} for r in top]}
        self.run_dir.write_summary(summary)


def search(space: str | Path | None = None, *, resume: str | Path | None = None, runs_root: str | Path = "runs",
           progress: Callable[[str], None] | None = _print, **overrides: Any) -> Path:
    """Run (or resume) a search; returns the run directory. Overrides are SearchConfig fields.

    ``search("search_spaces/mbconv.yaml", trials=8, workers=2)``; ``search(resume="runs/mbconv-...")``.
    """
    if resume is not None:
        run = RunDir.open(resume)
        stored = run.config().to_dict()
        allowed = {"workers", "cpus_per_trial", "gpus_per_trial", "address", "resource_timeout", "trials",
                   "tensorboard"}
        changed = {k for k, v in overrides.items() if v is not None and stored.get(k) != v} - allowed
        if changed:
            raise RunError(f"cannot change {', '.join(sorted(changed))} on resume (only "
                           f"{', '.join(sorted(allowed))})", where=str(run.path))
        config = SearchConfig.merge(stored, {k: v for k, v in overrides.items() if k in allowed})
        if config.address:
            probe_address(config.address)   # a dead address fails in seconds, before anything else
        return Search(run, run.space(), config, progress).run()
    if space is None:
        raise RunError("give a search space file, or --resume RUN_DIR")
    space_obj = SearchSpace.load(space)
    settings = dict(space_obj.settings)
    for kind in ("strategy", "evaluator"):   # the space's options belong to the strategy / evaluator it names
        if overrides.get(kind) not in (None, settings.get(kind)) and overrides.get(f"{kind}_options") is None:
            settings.pop(f"{kind}_options", None)
    config = SearchConfig.merge(settings, overrides, where=f"{space}: search")
    RunDir.check_settings(config)     # strategy and storage: refused before a run directory exists
    if config.address:
        probe_address(config.address)
    run = RunDir.create(runs_root, space_obj.name, space_obj, config)
    attempt = Search(run, space_obj, config, progress)
    try:
        return attempt.run()
    except Exception:                 # refused before its first trial (data, evaluator...): no empty run left behind
        run.discard_if_unused(config, attempt.store)
        raise
