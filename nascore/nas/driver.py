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

Resume (``--resume RUN``) after Ctrl-C or SIGKILL: finished trials stay, none runs twice, trials that were in flight
are marked interrupted and their exact parameters run again.
"""

from __future__ import annotations

import math
import os
import reprlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nascore.nas.config import SearchConfig
from nascore.errors import NascoreError, RunError
from nascore.nas.rundir import RunDir
from nascore.nas.space import SearchSpace
from nascore.nas.strategies import StrategyError
from nascore.io.yamlio import atomic_write_text

BUDGET_KINDS = ("trained", "failed")  # what counts towards `trials`; rejected / invalid / duplicate do not


@dataclass
class _Slot:
    """One worker actor and the trial it is busy with."""

    actor: Any
    trial: Any = None
    stage: str = "idle"          # idle -> start -> epoch -> finish
    future: Any = None
    epoch: int = 0
    started: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)


def _print(line: str) -> None:
    print(line, flush=True)


class Search:
    """One search in one run directory. ``Search(...).run()`` returns the run directory's path."""

    def __init__(self, run: RunDir, space: SearchSpace, config: SearchConfig,
                 progress: Callable[[str], None] | None = _print):
        self.run_dir = run
        self.space = space
        self.config = config
        self.progress = progress
        self.say = progress or (lambda line: None)
        self.study = None
        self.slots: list[_Slot] = []
        self.hash_owner: dict[str, int] = {}       # structural hash -> trial number that trained it
        self.waiting: dict[str, list[Any]] = {}    # hash -> duplicate trials waiting for that trial's result
        self.pending: dict[str, int] = {}          # hash -> trial number in flight
        self.splits_meta: tuple[tuple[int, ...], int] | None = None
        self._published: list[int] = []
        self._dirty = False                        # a trial finished since the summary was last written

    # set-up --------------------------------------------------------------------------------------------------------

    def _make_study(self):
        import optuna

        from nascore.nas.strategies import StrategyContext, make_sampler

        config = self.config
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=self.run_dir.name, storage=self.run_dir.storage(config),
                                    sampler=optuna.samplers.RandomSampler(), pruner=self._pruner(),
                                    directions=config.directions, load_if_exists=True)
        # On resume the seed moves on by the trials already asked, so the sampler does not replay its first
        # proposals (they would only come back as duplicates).
        seed = config.seed + len(study.get_trials(deepcopy=False))
        context = StrategyContext(directions=config.directions, seed=seed, workers=config.workers,
                                  grid=self.space.grid(), options=dict(config.strategy_options))
        study.sampler = make_sampler(config.strategy, context)
        return study

    def _pruner(self):
        import optuna

        config = self.config
        if len(config.objectives) > 1 or config.objectives[0] != "val_acc" or config.pruner == "none":
            if config.pruner not in ("none", "hyperband") and len(config.objectives) > 1:
                raise RunError(f"pruner {config.pruner!r} needs a single objective; Optuna prunes only those")
            return optuna.pruners.NopPruner()
        if config.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.epochs)
        if config.pruner == "asha":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=1)
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)

    def _recover(self) -> None:
        """After a crash: in-flight trials become FAIL(interrupted) and their parameters are queued again."""
        import optuna

        for t in self.study.get_trials(deepcopy=False):
            kind = t.user_attrs.get("kind")
            if t.state == optuna.trial.TrialState.COMPLETE and kind == "trained":
                self.hash_owner.setdefault(t.user_attrs.get("hash", ""), t.number)
            if t.state == optuna.trial.TrialState.RUNNING:
                self._fail_stored(t, "the search stopped while it ran", kind="interrupted")
                if kind == "trained":   # it was training; one still being sampled had no complete architecture
                    self.study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
                    self.say(f"[trial {t.number}] was interrupted; its parameters run again")

    def _start_ray(self) -> bool:
        import ray

        if ray.is_initialized():
            return False
        config = self.config
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a private local cluster; see RAY_OPTUNA_NOTES
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        if config.address:
            ray.init(address=config.address, log_to_driver=False)
        else:
            cpus = max(os.cpu_count() or 1, math.ceil(config.workers * config.cpus_per_trial))
            ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=256 * 1024 * 1024)
        return True

    def _make_slots(self) -> None:
        import ray

        from nascore.nas.worker import TrialWorker

        config = self.config
        remote = ray.remote(TrialWorker).options(num_cpus=config.cpus_per_trial, num_gpus=config.gpus_per_trial,
                                                 max_restarts=0)
        threads = max(1, math.ceil(config.cpus_per_trial))
        device = "cuda" if config.gpus_per_trial > 0 else "cpu"
        args = (config.data, config.data_root, dict(config.data_params), threads, device, config.evaluator)
        self._remote = lambda: remote.remote(*args)
        self.slots = [_Slot(self._remote()) for _ in range(config.workers)]

    # the loop ------------------------------------------------------------------------------------------------------

    def run(self) -> Path:
        import ray

        from nascore.training.data import load_dataset
        from nascore.nas.evaluators import EVALUATORS

        EVALUATORS.get(self.config.evaluator)   # an unknown evaluator fails here, not in every worker
        splits = load_dataset(self.config.data, self.config.data_root, **self.config.data_params)
        self.splits_meta = (tuple(splits.input_shape), splits.num_classes)
        del splits
        self.run_dir.lock()
        self.run_dir.remove_leftovers()
        owns_ray = False
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        try:
            self.study = self._make_study()
            self.study.set_user_attr("space", self.space.name)
            self._recover()
            owns_ray = self._start_ray()
            self._make_slots()
            self.say(f"search {self.run_dir.name}: {self.config.trials} trials of {self.config.epochs} epochs, "
                     f"{self.config.workers} worker(s), strategy {self.config.strategy}, objectives "
                     f"{', '.join(self.config.objectives)}")
            self._loop()
            self._write_summary("finished")
            self.say(self._status_line(final=True))
        except KeyboardInterrupt:
            self._write_summary("interrupted")
            self.say(f"interrupted: resume with `nascore search --resume {self.run_dir.path}`")
            raise
        except BaseException:
            self._write_summary("crashed")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            for slot in self.slots:
                try:
                    ray.kill(slot.actor)
                except Exception:  # noqa: BLE001 - already dead
                    pass
            if owns_ray:
                ray.shutdown()
            self.run_dir.unlock()
        return self.run_dir.path

    def _on_sigterm(self, signum, frame) -> None:
        raise KeyboardInterrupt

    def _budget_used(self) -> int:
        return sum(1 for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get("kind") in BUDGET_KINDS)

    def _loop(self) -> None:
        import ray

        from nascore.nas.strategies import exhausted

        used = self._budget_used()
        idle_outcomes = 0
        limit = max(200, 20 * self.config.trials)
        sampling_done = False
        while True:
            busy = [s for s in self.slots if s.stage != "idle"]
            while not sampling_done and used + len(busy) < self.config.trials:
                free = next((s for s in self.slots if s.stage == "idle"), None)
                if free is None:
                    break
                if exhausted(self.study.sampler, self.study):
                    sampling_done = True
                    self.say("the strategy has no more architectures to propose")
                    break
                if self._launch(free):
                    busy.append(free)
                    idle_outcomes = 0
                else:
                    idle_outcomes += 1
                    if idle_outcomes >= limit:
                        sampling_done = True
                        self.say(f"stopping: {limit} samples in a row were invalid, rejected or duplicates")
            if self._dirty:            # after the free slots got new work, so no worker waits on bookkeeping
                self._publish()
            if not busy:
                break
            futures = [s.future for s in busy]
            ready, _ = ray.wait(futures, num_returns=1)
            slot = next(s for s in busy if s.future == ready[0])
            if self._advance(slot):
                used += 1

    # one trial -----------------------------------------------------------------------------------------------------

    def _launch(self, slot: _Slot) -> bool:
        """Ask for a trial and start it on ``slot``; False when it ended before training (invalid, rejected,
        duplicate)."""
        import optuna

        from nascore.graph.hashing import structural_hash

        try:
            trial = self.study.ask()
        except Exception as exc:  # noqa: BLE001 - the sampler (a plugin) failed: end cleanly, saying which
            self._fail_orphans(f"the sampler raised {type(exc).__name__}")
            raise StrategyError(f"its sampler raised {type(exc).__name__}: {str(exc)[:200]}",
                                where=f"strategy {self.config.strategy!r}") from None
        try:
            graph = self.space.sample(trial)
            self._check_data_fit(graph)
        except RunError:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        except NascoreError as err:
            return self._end_early(trial, "invalid", str(err))
        except Exception as exc:  # noqa: BLE001 - suggest_* calls reach the sampler, a plugin
            trial.set_user_attr("reason", f"the sampler raised {type(exc).__name__}: {str(exc)[:200]}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise StrategyError(f"its sampler raised {type(exc).__name__}: {str(exc)[:200]}",
                                where=f"strategy {self.config.strategy!r}") from None
        analysis = graph.analyse()
        trial.set_user_attr("params", analysis.params)
        trial.set_user_attr("macs", analysis.macs)
        limits = self.config.constraints
        for key, value in (("max_params", analysis.params), ("max_macs", analysis.macs)):
            if key in limits and value > limits[key]:
                return self._end_early(trial, "rejected", f"{key[4:]} {value:,} > {key} {limits[key]:,.0f}")
        digest = structural_hash(graph)
        trial.set_user_attr("hash", digest)
        if digest in self.hash_owner:
            return self._copy_result(trial, self.hash_owner[digest])
        if digest in self.pending:
            trial.set_user_attr("kind", "duplicate")
            trial.set_user_attr("duplicate_of", self.pending[digest])
            self.waiting.setdefault(digest, []).append(trial)
            return False
        self.pending[digest] = trial.number
        trial.set_user_attr("kind", "trained")
        graph_doc = graph.to_dict()
        atomic_write_text(self.run_dir.trial_dir(trial.number) / "graph.yaml", graph.to_yaml())
        train = {"epochs": self.config.epochs, "seed": self.config.seed + trial.number, **self.config.train}
        slot.trial, slot.stage, slot.epoch, slot.history = trial, "start", 0, []
        slot.info = {"params": analysis.params, "macs": analysis.macs, "hash": digest}
        slot.started = time.perf_counter()
        slot.future = slot.actor.start.remote(graph_doc, train, limits.get("max_latency_ms"),
                                              "latency_ms" in self.config.objectives)
        return True

    def _fail_orphans(self, reason: str) -> None:
        """Trials Optuna left RUNNING that no worker holds (a failed ask): record them as failed."""
        import optuna

        held = {s.trial.number for s in self.slots if s.trial is not None}
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if t.number not in held:
                self._fail_stored(t, reason)

    def _fail_stored(self, t, reason: str, kind: str | None = None) -> None:
        """Fail a RUNNING trial known only from storage (no live Trial object), recording why."""
        import optuna

        for key, value in (("kind", kind), ("reason", reason)):
            if value is not None:
                self.study._storage.set_trial_user_attr(t._trial_id, key, value)
        self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)

    def _check_data_fit(self, graph) -> None:
        (channels, *_), classes = self.splits_meta
        if graph.input_shape[0] != channels:
            raise RunError(f"the space's graphs take {graph.input_shape[0]} input channels but data set "
                           f"{self.config.data!r} has {channels}; set graph.input to [{channels}, H, W]")
        outs = list(graph.analyse().outputs.values())
        if len(outs) != 1 or outs[0] != (classes,):
            raise RunError(f"the space's graphs output {outs} but data set {self.config.data!r} has {classes} "
                           f"classes; end the graph with a linear layer of out: {classes}")

    def _advance(self, slot: _Slot) -> bool:
        """Handle the result of ``slot``'s current step; True when a budgeted trial finished."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        trial = slot.trial
        try:
            result = ray.get(slot.future)
        except RayActorError as exc:
            slot.actor = self._remote()
            return self._fail(slot, f"worker process died: {str(exc).splitlines()[0]}", retry=True)
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            return self._fail(slot, f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}")
        if slot.stage == "start":
            slot.info.update(result)
            trial.set_user_attr("latency_ms", result["latency_ms"])
            trial.set_user_attr("device", result.get("device"))
            if result.get("rejected"):
                self._release(slot)
                self._end_early(trial, "rejected", result["rejected"], keep_pending=False)
                return False
            return self._next_epoch(slot)
        if slot.stage == "epoch":
            return self._after_epoch(slot, result)
        return self._complete(slot, result)

    def _next_epoch(self, slot: _Slot) -> bool:
        slot.stage, slot.epoch = "epoch", slot.epoch + 1
        slot.future = slot.actor.epoch.remote()
        return False

    def _after_epoch(self, slot: _Slot, metrics: dict[str, Any]) -> bool:
        import optuna

        trial = slot.trial
        accuracy = metrics.get("val_acc") if isinstance(metrics, dict) else None
        if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool) or not math.isfinite(accuracy):
            return self._fail(slot, f"the {self.config.evaluator!r} evaluator reported val_acc="
                                    f"{reprlib.repr(accuracy)} after epoch {slot.epoch}; expected a finite number")
        slot.history.append({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        trial.set_user_attr("history", slot.history)
        if len(self.config.objectives) == 1:
            trial.report(float(metrics["val_acc"]), slot.epoch)
            if slot.epoch < self.config.epochs and trial.should_prune():
                trial.set_user_attr("reason", f"pruned after epoch {slot.epoch}")
                self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                self._settle_duplicates(slot.info["hash"], optuna.trial.TrialState.PRUNED, None)
                self._dirty = True
                self._event(f"[trial {trial.number}] pruned after epoch {slot.epoch}: val_acc "
                            f"{metrics['val_acc']:.4f}")
                slot.actor.abandon.remote()
                self._release(slot)
                return True
        if slot.epoch < self.config.epochs:
            return self._next_epoch(slot)
        slot.stage = "finish"
        slot.future = slot.actor.finish.remote()
        return False

    def _complete(self, slot: _Slot, result: dict[str, Any]) -> bool:
        import optuna

        trial, info = slot.trial, slot.info
        self.run_dir.write_atomic_bytes(self.run_dir.trial_dir(trial.number) / "model.safetensors",
                                        result["weights"])
        last = slot.history[-1]
        metrics = {"val_acc": float(last["val_acc"]), "test_acc": float(result["test_acc"]),
                   "params": float(info["params"]), "macs": float(info["macs"]),
                   "latency_ms": float(info["latency_ms"])}
        values = [metrics[o] for o in self.config.objectives]
        bad = [f"{o}={v}" for o, v in zip(self.config.objectives, values) if not math.isfinite(v)]
        if bad:
            return self._fail(slot, f"non-finite objective {', '.join(bad)}; the trial's result cannot be ranked")
        trial.set_user_attr("test_acc", metrics["test_acc"])
        trial.set_user_attr("seconds", time.perf_counter() - slot.started)
        self.study.tell(trial, values if len(values) > 1 else values[0])
        self.hash_owner[info["hash"]] = trial.number
        self._settle_duplicates(info["hash"], optuna.trial.TrialState.COMPLETE, values)
        self._release(slot)
        self._dirty = True
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
        self._event(f"[trial {trial.number}] complete: {shown} ({time.perf_counter() - slot.started:.1f} s)")
        return True

    def _fail(self, slot: _Slot, reason: str, retry: bool = False) -> bool:
        import optuna

        trial = slot.trial
        trial.set_user_attr("kind", "failed")
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self._settle_duplicates(slot.info.get("hash", ""), optuna.trial.TrialState.FAIL, None)
        retries = int(trial.user_attrs.get("retries", 0))
        if retry and retries < self.config.max_retries:
            self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number, "retries": retries + 1},
                                     skip_if_exists=False)
            reason += " (queued again)"
        self._release(slot)
        self._dirty = True
        self._event(f"[trial {trial.number}] failed: {reason}")
        return True

    def _end_early(self, trial, kind: str, reason: str, keep_pending: bool = True) -> bool:
        import optuna

        trial.set_user_attr("kind", kind)
        trial.set_user_attr("reason", reason)
        self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if not keep_pending:
            self._settle_duplicates(trial.user_attrs.get("hash", ""), optuna.trial.TrialState.FAIL, None,
                                    reason=reason)
        self.say(f"[trial {trial.number}] {kind}: {reason}")
        return False

    def _copy_result(self, trial, owner: int) -> bool:
        """An architecture trained before: take its values instead of training it again."""

        source = self.study.get_trials(deepcopy=False)[owner]
        trial.set_user_attr("kind", "duplicate")
        trial.set_user_attr("duplicate_of", owner)
        values = source.values
        self.study.tell(trial, values if len(values) > 1 else values[0])
        self.say(f"[trial {trial.number}] same architecture as trial {owner}: result reused")
        return False

    def _settle_duplicates(self, digest: str, state, values, reason: str | None = None) -> None:
        import optuna

        self.pending.pop(digest, None)
        for waiting in self.waiting.pop(digest, []):
            if state == optuna.trial.TrialState.COMPLETE:
                self.study.tell(waiting, values if len(values) > 1 else values[0])
            else:
                waiting.set_user_attr("reason", reason or "the trial it duplicates did not complete")
                self.study.tell(waiting, state=state)

    def _release(self, slot: _Slot) -> None:
        slot.trial, slot.stage, slot.future = None, "idle", None

    # reporting -----------------------------------------------------------------------------------------------------

    def _best_trials(self) -> list[Any]:
        import optuna

        if len(self.config.objectives) == 1:
            trained = [t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                       if t.user_attrs.get("kind") == "trained"]
            if not trained:
                return []
            pick = max if self.config.directions[0] == "maximize" else min
            return [pick(trained, key=lambda t: t.values[0])]
        # Duplicates carry their original's values, so the front over all trials holds the originals too.
        return [t for t in self.study.best_trials if t.user_attrs.get("kind") == "trained"]

    def _publish(self) -> None:
        self._dirty = False
        numbers = [t.number for t in self._best_trials()]
        if numbers and numbers != self._published:   # copy files only when the best (or the front) changed
            self.run_dir.publish("best" if len(self.config.objectives) == 1 else "pareto", numbers)
            self._published = numbers
        self._write_summary("running")

    def _counts(self) -> dict[str, int]:
        import optuna

        counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0, "rejected": 0, "invalid": 0,
                  "duplicate": 0, "interrupted": 0}
        for t in self.study.get_trials(deepcopy=False):
            kind = t.user_attrs.get("kind")
            if kind in ("rejected", "invalid", "duplicate", "interrupted"):
                counts[kind] += 1
            elif t.state == optuna.trial.TrialState.COMPLETE:
                counts["complete"] += 1
            elif t.state == optuna.trial.TrialState.PRUNED:
                counts["pruned"] += 1
            elif t.state == optuna.trial.TrialState.FAIL:
                counts["failed"] += 1
            elif t.state == optuna.trial.TrialState.RUNNING:
                counts["running"] += 1
        return counts

    def _event(self, line: str) -> None:
        """A finished trial: its line and the search's progress (computed only when someone is listening)."""
        if self.progress is not None:
            self.progress(f"{line} | {self._status_line()}")

    def _status_line(self, final: bool = False) -> str:
        c = self._counts()
        done = c["complete"] + c["pruned"] + c["failed"]
        best = self._best_trials()
        if best and len(self.config.objectives) == 1:
            text = f"best {self.config.objectives[0]} {best[0].values[0]:.4f} (trial {best[0].number})"
        elif best:
            text = f"Pareto set of {len(best)}"
        else:
            text = "no result yet"
        head = "finished" if final else "progress"
        return (f"{head}: {done}/{self.config.trials} trained, {c['running']} running, {c['failed']} failed, "
                f"{c['pruned']} pruned, {c['rejected'] + c['invalid']} rejected/invalid, {c['duplicate']} "
                f"duplicates; {text}")

    def _write_summary(self, state: str) -> None:
        if self.study is None:
            return
        best = self._best_trials()
        summary = {"run": self.run_dir.name, "state": state, "space": self.space.name,
                   "objectives": self.config.objectives, "directions": self.config.directions,
                   "counts": self._counts(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
                   ("best" if len(self.config.objectives) == 1 else "pareto"): [
                       {"trial": t.number, "values": t.values, "params": t.params,
                        "graph": str(self.run_dir.trial_dir(t.number) / "graph.yaml")} for t in best]}
        self.run_dir.write_summary(summary)


def search(space: str | Path | None = None, *, resume: str | Path | None = None, runs_root: str | Path = "runs",
           progress: Callable[[str], None] | None = _print, **overrides: Any) -> Path:
    """Run (or resume) a search; returns the run directory. Overrides are SearchConfig fields.

    ``search("search_spaces/mbconv.yaml", trials=8, workers=2)``; ``search(resume="runs/mbconv-...")``.
    """
    if resume is not None:
        run = RunDir.open(resume)
        stored = run.config().to_dict()
        allowed = {"workers", "cpus_per_trial", "gpus_per_trial", "address", "trials"}
        changed = {k for k, v in overrides.items() if v is not None and stored.get(k) != v} - allowed
        if changed:
            raise RunError(f"cannot change {', '.join(sorted(changed))} on resume (only "
                           f"{', '.join(sorted(allowed))})", where=str(run.path))
        config = SearchConfig.merge(stored, {k: v for k, v in overrides.items() if k in allowed})
        return Search(run, run.space(), config, progress).run()
    if space is None:
        raise RunError("give a search space file, or --resume RUN_DIR")
    space_obj = SearchSpace.load(space)
    settings = dict(space_obj.settings)
    if overrides.get("strategy") not in (None, settings.get("strategy")) and overrides.get("strategy_options") is None:
        settings.pop("strategy_options", None)   # the space's options belong to the strategy it names
    config = SearchConfig.merge(settings, overrides, where=f"{space}: search")
    run = RunDir.create(runs_root, space_obj.name, space_obj, config)
    return Search(run, space_obj, config, progress).run()
