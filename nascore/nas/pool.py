"""The actor pool: Ray's lifecycle and one long-lived worker actor per slot.

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
from dataclasses import dataclass
from enum import Enum
from typing import Any


class SlotState(Enum):
    IDLE = "idle"            # no trial
    STARTING = "starting"    # building the model and measuring its latency
    TRAINING = "training"    # training one epoch
    FINISHING = "finishing"  # testing, and handing back the weights


@dataclass
class Slot:
    """One worker actor, the step it runs, and the job (the driver's trial) it runs it for."""

    actor: Any
    state: SlotState = SlotState.IDLE
    future: Any = None
    job: Any = None


class StepFailed(Exception):
    """A slot's step did not return: it raised (``worker_died`` False) or its worker process died (True)."""

    def __init__(self, reason: str, worker_died: bool):
        super().__init__(reason)
        self.reason = reason
        self.worker_died = worker_died


def connect_ray(address: str | None, cpus_needed: int = 1) -> bool:
    """Join the cluster at ``address``, or start a private Ray on this machine (at least ``cpus_needed`` logical
    CPUs), unless Ray runs already in this process. Returns whether this call started it (and should shut it down).
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a private local cluster; see RAY_OPTUNA_NOTES
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=max(os.cpu_count() or 1, cpus_needed), include_dashboard=False, log_to_driver=False,
                 object_store_memory=256 * 1024 * 1024)
    return True


class ActorPool:
    """``workers`` TrialWorker actors on a local Ray (started here when none is running) or the cluster at
    ``address``; each takes ``cpus`` / ``gpus`` (fractions allowed), loads data set ``data`` once and trains with
    ``evaluator``. A worker's torch threads (cpus rounded up) and device (cuda when it has a GPU) follow from them.
    """

    def __init__(self, workers: int, *, cpus: float, gpus: float, address: str | None, data: str,
                 data_root: str | None, data_params: dict[str, Any], evaluator: str,
                 evaluator_options: dict[str, Any] | None = None):
        self.workers = workers
        self.cpus = cpus
        self.gpus = gpus
        self.address = address
        threads = max(1, math.ceil(cpus))
        device = "cuda" if gpus > 0 else "cpu"
        self._worker_args = (data, data_root, dict(data_params), threads, device, evaluator,
                             dict(evaluator_options or {}))
        self._remote: Any = None
        self._owns_ray = False
        self.slots: list[Slot] = []

    @classmethod
    def for_search(cls, config: Any) -> "ActorPool":
        """The pool a SearchConfig asks for."""
        return cls(config.workers, cpus=config.cpus_per_trial, gpus=config.gpus_per_trial, address=config.address,
                   data=config.data, data_root=config.data_root, data_params=config.data_params,
                   evaluator=config.evaluator, evaluator_options=config.evaluator_options)

    # lifecycle -----------------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Start Ray unless it runs already (then it is the caller's, and stays up), and the worker actors."""
        import ray

        from nascore.nas.worker import TrialWorker

        self._owns_ray = connect_ray(self.address, math.ceil(self.workers * self.cpus))
        self._remote = ray.remote(TrialWorker).options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=0)
        self.slots = [Slot(self._new_actor()) for _ in range(self.workers)]

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

    def _new_actor(self) -> Any:
        return self._remote.remote(*self._worker_args)

    # slots ---------------------------------------------------------------------------------------------------------

    def idle_slot(self) -> Slot | None:
        return next((s for s in self.slots if s.state is SlotState.IDLE), None)

    def busy(self) -> list[Slot]:
        return [s for s in self.slots if s.state is not SlotState.IDLE]

    def jobs(self) -> list[Any]:
        """What the busy slots run."""
        return [s.job for s in self.slots if s.job is not None]

    def start(self, slot: Slot, job: Any, graph_doc: dict[str, Any], train: dict[str, Any],
              max_latency_ms: float | None, precise_latency: bool) -> None:
        """Give ``job`` to the idle ``slot``: build the model and measure its latency (``TrialWorker.start``)."""
        slot.job = job
        self._submit(slot, SlotState.STARTING, slot.actor.start.remote(graph_doc, train, max_latency_ms,
                                                                        precise_latency))

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

    def wait(self) -> Slot:
        """Block until a busy slot's step is done; that slot."""
        import ray

        busy = self.busy()
        ready, _ = ray.wait([s.future for s in busy], num_returns=1)
        return next(s for s in busy if s.future == ready[0])

    def result(self, slot: Slot) -> Any:
        """The result of ``slot``'s step; StepFailed if it raised or its worker died (then replaced by a new one)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        try:
            return ray.get(slot.future)
        except RayActorError as exc:
            slot.actor = self._new_actor()
            raise StepFailed(f"worker process died: {str(exc).splitlines()[0]}", worker_died=True) from None
        except RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            text = str(cause).splitlines()[0] if str(cause) else ""
            raise StepFailed(f"{type(cause).__name__}: {text}", worker_died=False) from None


__all__ = ["ActorPool", "Slot", "SlotState", "StepFailed", "connect_ray"]
