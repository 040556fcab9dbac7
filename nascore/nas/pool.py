"""The actor pool: one long-lived worker actor per slot (joining the cluster: :mod:`nascore.nas.cluster`).

Each slot is a :class:`~nascore.nas.worker.TrialWorker` actor, reused from trial to trial (actor start-up is the
dominant per-trial cost of Ray Tune's defaults), that runs one step of one trial at a time:

    IDLE --start--> STARTING --epoch--> TRAINING (once per epoch) --finish--> FINISHING --release--> IDLE

:meth:`ActorPool.wait` returns a slot whose step is done and :meth:`ActorPool.result` its result, or raises
:class:`StepFailed` (the step raised, or the worker process died; a dead worker is replaced at once). What runs on a
slot (the driver's trial) is the slot's ``job``, opaque to the pool. Ray is imported when the pool opens.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from nascore.errors import ClusterError
from nascore.nas.cluster import alive_nodes, amount, check_capacity, connect_ray


class SlotState(Enum):
    IDLE = "idle"            # no trial
    STARTING = "starting"    # building the model and measuring its latency
    TRAINING = "training"    # training one epoch
    FINISHING = "finishing"  # testing, and handing back the weights
    SCORING = "scoring"      # a warm start's score, by an evaluator that trains nothing


@dataclass
class Slot:
    """One worker actor, the step it runs, and the job (the driver's trial) it runs it for."""

    actor: Any
    state: SlotState = SlotState.IDLE
    future: Any = None
    job: Any = None
    ready: Any = None         # the new actor's first answer (``where``) while it is placed and starts; None after
    node: dict[str, Any] | None = None   # where the actor runs: node_id, node_ip, pid
    since: float = 0.0        # when the actor was asked for


class StepFailed(Exception):
    """A slot's step did not return: it raised (``worker_died`` False) or its worker process died (True)."""

    def __init__(self, reason: str, worker_died: bool):
        super().__init__(reason)
        self.reason = reason
        self.worker_died = worker_died


class _PooledWorker:
    """Mixed into TrialWorker for the pool: ``where`` answers once the actor is placed and started."""

    def where(self) -> dict[str, Any]:
        import ray

        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                "pid": os.getpid()}


class ActorPool:
    """``workers`` TrialWorker actors on a local Ray (started here when none is running) or the cluster at
    ``address``; each takes ``cpus`` / ``gpus`` (fractions allowed), loads data set ``data`` once and trains with
    ``evaluator``. A worker's torch threads (cpus rounded up) and device (cuda when it has a GPU) follow from them.
    A worker that has not started after ``resource_timeout`` seconds, while none has, ends the search with a
    ClusterError; ``say`` hears what is pending meanwhile.
    """

    tick = 1.0             # seconds between looks at workers still being placed
    notice_after = 10.0    # the first word about a worker still waiting, then every ``notice_every`` seconds
    notice_every = 60.0

    def __init__(self, workers: int, *, cpus: float, gpus: float, address: str | None, data: str,
                 data_root: str | None, data_params: dict[str, Any], evaluator: str,
                 evaluator_options: dict[str, Any] | None = None, resource_timeout: float = 300.0,
                 say: Callable[[str], None] | None = None):
        self.workers = workers
        self.cpus = cpus
        self.gpus = gpus
        self.address = address
        self.resource_timeout = resource_timeout
        self.say = say or (lambda line: None)
        threads = max(1, math.ceil(cpus))
        device = "cuda" if gpus > 0 else "cpu"
        self._worker_args = (data, data_root, dict(data_params), threads, device, evaluator,
                             dict(evaluator_options or {}))
        self._remote: Any = None
        self._owns_ray = False
        self.slots: list[Slot] = []
        self._start_failures = 0      # actors that died before they answered, in a row
        self._next_notice = 0.0

    @classmethod
    def for_search(cls, config: Any, say: Callable[[str], None] | None = None) -> "ActorPool":
        """The pool a SearchConfig asks for."""
        return cls(config.workers, cpus=config.cpus_per_trial, gpus=config.gpus_per_trial, address=config.address,
                   data=config.data, data_root=config.data_root, data_params=config.data_params,
                   evaluator=config.evaluator, evaluator_options=config.evaluator_options,
                   resource_timeout=getattr(config, "resource_timeout", 300.0), say=say)

    # lifecycle -----------------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start Ray unless it runs already (then it is the caller's, and stays up), check that the cluster can
        hold a worker at all, and ask for the worker actors (they start in the background)."""
        import ray

        from nascore.nas.worker import TrialWorker

        cores = os.cpu_count() or 1   # a private Ray gets this machine's cores; a trial may not ask for more
        self._owns_ray = connect_ray(self.address, math.ceil(self.workers * min(self.cpus, cores)))
        check_capacity(self.workers, self.cpus, self.gpus, say=self.say)
        worker = type("TrialWorker", (_PooledWorker, TrialWorker), {})   # Ray's process titles keep the name
        self._remote = ray.remote(worker).options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)
        self.slots = [self._place(Slot(None)) for _ in range(self.workers)]
        self._next_notice = time.monotonic() + min(self.notice_after, self.resource_timeout / 2)

    def close(self) -> None:
        """Kill the actors; shut Ray down if :meth:`open` started it. Safe to call when open failed midway."""
        import ray

        for slot in self.slots:
            try:
                ray.kill(slot.actor)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False

    def _place(self, slot: Slot) -> Slot:
        """Give ``slot`` a new actor; it takes trials once it answered (:meth:`wait`)."""
        slot.actor = self._remote.remote(*self._worker_args)
        slot.ready, slot.node, slot.since = slot.actor.where.remote(), None, time.monotonic()
        return slot

    # slots ---------------------------------------------------------------------------------------------------------

    def idle_slot(self) -> Slot | None:
        """A slot whose actor has started and runs no trial."""
        return next((s for s in self.slots if s.state is SlotState.IDLE and s.ready is None), None)

    def busy(self) -> list[Slot]:
        return [s for s in self.slots if s.state is not SlotState.IDLE]

    def placing(self) -> list[Slot]:
        """Slots whose actor has not answered yet (waiting for resources, or loading its data set)."""
        return [s for s in self.slots if s.ready is not None]

    def jobs(self) -> list[Any]:
        """What the busy slots run."""
        return [s.job for s in self.slots if s.job is not None]

    def start(self, slot: Slot, job: Any, graph_doc: dict[str, Any], train: dict[str, Any],
              max_latency_ms: float | None, precise_latency: bool) -> None:
        """Give ``job`` to the idle ``slot``: build the model and measure its latency (``TrialWorker.start``)."""
        slot.job = job
        self._submit(slot, SlotState.STARTING, slot.actor.start.remote(graph_doc, train, max_latency_ms,
                                                                        precise_latency))

    def score(self, slot: Slot, job: Any, graph_doc: dict[str, Any], train: dict[str, Any], evaluator: str,
              options: dict[str, Any]) -> None:
        """Give ``job`` to the idle ``slot`` to be scored by ``evaluator`` (``TrialWorker.score``)."""
        slot.job = job
        self._submit(slot, SlotState.SCORING, slot.actor.score.remote(graph_doc, train, evaluator, options))

    def train_epoch(self, slot: Slot) -> None:
        self._submit(slot, SlotState.TRAINING, slot.actor.epoch.remote())

    def finish(self, slot: Slot) -> None:
        self._submit(slot, SlotState.FINISHING, slot.actor.finish.remote())

    def abandon(self, slot: Slot) -> None:
        """Drop the slot's training state (the trial was pruned) and free the slot."""
        slot.actor.abandon.remote()
        self.release(slot)

    def release(self, slot: Slot) -> None:
        slot.job, slot.state, slot.future = None, SlotState.IDLE, None

    def _submit(self, slot: Slot, state: SlotState, future: Any) -> None:
        slot.state, slot.future = state, future

    def wait(self) -> Slot | None:
        """Block until a busy slot's step is done (that slot), or a new actor answered (None: a slot is free).

        While actors wait to be placed, say so every so often; when none has ever started and the oldest has
        waited ``resource_timeout`` seconds with nothing else to do, a ClusterError says what is pending and why.
        """
        import ray

        while True:
            busy, placing = self.busy(), self.placing()
            futures = [s.future for s in busy] + [s.ready for s in placing]
            ready, _ = ray.wait(futures, num_returns=1, timeout=self.tick if placing else None)
            if ready:
                break
            self._waiting(busy, placing)
        done = next((s for s in busy if s.future == ready[0]), None)
        if done is not None:
            return done
        self._answered(next(s for s in placing if s.ready == ready[0]))
        return None

    def _answered(self, slot: Slot) -> None:
        """A new actor's first answer: it runs (its node noted), or it died starting and another is asked for."""
        from ray.exceptions import RayActorError

        import ray

        try:
            slot.node = ray.get(slot.ready)
            slot.ready = None
            self._start_failures = 0
            self._next_notice = time.monotonic() + min(self.notice_after, self.resource_timeout / 2)
        except RayActorError as exc:
            self._start_failures += 1
            reason = _actor_death(exc)
            if self._start_failures > 2 * self.workers and not any(s.node for s in self.slots):
                raise ClusterError(f"no worker could start ({self._start_failures} tried): {reason}",
                                   where="ray") from None
            self.say(f"a worker died while starting ({reason}); asking for another")
            self._place(slot)

    def _waiting(self, busy: list[Slot], placing: list[Slot]) -> None:
        """Nothing finished within a tick and actors are still pending: a word now and then; give up when no
        worker runs, nothing is busy, and the oldest pending one has waited ``resource_timeout`` seconds."""
        now = time.monotonic()
        waited = now - min(s.since for s in placing)
        started = [s for s in self.slots if s.ready is None]
        if not started and not busy and waited >= self.resource_timeout:
            raise ClusterError(f"no worker started within {self.resource_timeout:g} s: {self._pending(placing)}",
                               where="--resource-timeout")
        if now >= self._next_notice:
            self._next_notice = now + self.notice_every
            left = (f"; giving up {max(0.0, self.resource_timeout - waited):.0f} s from now (--resource-timeout)"
                    if not started and not busy else "")
            self.say(f"waiting for the cluster: {self._pending(placing)}{left}")

    def _pending(self, placing: list[Slot]) -> str:
        """What is pending and why: the workers not started, what each asks, what the cluster has free."""
        import ray

        free, total = ray.available_resources(), ray.cluster_resources()
        return (f"{len(placing)} of {self.workers} workers not started after "
                f"{time.monotonic() - min(s.since for s in placing):.0f} s (each asks {amount(self.cpus, 'CPU')}, "
                f"{amount(self.gpus, 'GPU')}; free now: {free.get('CPU', 0.0):g} of {total.get('CPU', 0.0):g} "
                f"CPUs, {free.get('GPU', 0.0):g} of {total.get('GPU', 0.0):g} GPUs on "
                f"{len(alive_nodes())} node(s); a worker also starts only once its data set is loaded)")

    def result(self, slot: Slot) -> Any:
        """The result of ``slot``'s step; StepFailed if it raised or its worker died (then replaced by a new one)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(slot.future)
        except RayActorError as exc:
            old, node = slot.actor, slot.node
            try:
                ray.kill(old, no_restart=True)   # one only unreachable for now must not come back holding resources
            except Exception:  # noqa: BLE001 - gone already
                pass
            self._place(slot)
            raise StepFailed(f"{self._lost_how(node, exc)}: {_actor_death(exc)}", worker_died=True) from None
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            text = str(cause).splitlines()[0] if str(cause) else ""
            raise StepFailed(f"{type(cause).__name__}: {text}", worker_died=False) from None

    @staticmethod
    def _lost_how(node: dict[str, Any] | None, exc: BaseException) -> str:
        """How a worker was lost, naming its node: its process died, it cannot be reached, or its node is gone."""
        import ray
        from ray.exceptions import ActorUnavailableError

        if not node:
            return "worker process died"
        where = f"node {node['node_ip']} (id {node['node_id'][:8]})"
        try:
            alive = any(n["NodeID"] == node["node_id"] and n.get("Alive") for n in ray.nodes())
        except Exception:  # noqa: BLE001 - the question is only for the reason's wording
            alive = True
        if not alive:
            return f"worker lost with its {where}"
        if isinstance(exc, ActorUnavailableError):
            return f"worker on {where} unreachable (its process or its node is gone)"
        return f"worker process died on {where}"


def _actor_death(exc: BaseException) -> str:
    """One line of why an actor died: the first line of Ray's message, and the error its creation raised if any."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    head = lines[0][:200] if lines else type(exc).__name__
    raised_in = next((line for line in reversed(lines) if "Error:" in line and line is not lines[0]), None)
    return f"{head} ({raised_in[:200]})" if raised_in else head


__all__ = ["ActorPool", "Slot", "SlotState", "StepFailed"]
