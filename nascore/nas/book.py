"""The trial book: what each trial of a search is, which architectures are trained, and what the progress says.

Pure Python (no Optuna, Ray or torch), so the search's bookkeeping rules are tested on their own. The driver turns
Optuna's trials into :class:`TrialRecord` values and asks the book; the book never writes anything.

Every trial carries a :class:`Kind` in its user attribute ``kind``:

- ``trained``: sent to a worker; its state says how it ended (COMPLETE, PRUNED, or FAIL when training failed).
- ``failed``: sent to a worker, and training failed (an exception, a dead worker, a non-finite metric).
- ``duplicate``: the same architecture (structural hash) as a trial trained or training; it takes that result.
- ``invalid``: the sample is not a valid graph. ``rejected``: it breaks a hard constraint (params, MACs, latency).
- ``interrupted``: in flight when the search stopped; a resume marks it so (and runs a trained one again).
- ``scored``: warm start only: scored by the zero-cost proxy and not among the best ``warm_start_top``, so never
  trained (state FAIL, so no strategy learns from it and it never becomes the best; its user attribute ``proxy``
  keeps the score).

Only ``trained`` and ``failed`` trials count towards the budget of ``trials``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Kind(str, Enum):
    """What a trial is to the search (stored as its ``kind`` user attribute, by value)."""

    TRAINED = "trained"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    INVALID = "invalid"
    REJECTED = "rejected"
    INTERRUPTED = "interrupted"
    SCORED = "scored"

    @classmethod
    def of(cls, value: Any) -> Kind | None:
        """The kind stored as ``value``; None when missing (a trial still being sampled) or unknown."""
        try:
            return cls(value)
        except (ValueError, TypeError):
            return None


class State(Enum):
    """A trial's state in the study: Optuna's ``TrialState`` by name."""

    RUNNING = "RUNNING"
    WAITING = "WAITING"
    COMPLETE = "COMPLETE"
    PRUNED = "PRUNED"
    FAIL = "FAIL"


BUDGET_KINDS = (Kind.TRAINED, Kind.FAILED)   # what counts towards `trials`; rejected / invalid / duplicate do not
COUNTED_KINDS = (Kind.REJECTED, Kind.INVALID, Kind.DUPLICATE, Kind.INTERRUPTED, Kind.SCORED)   # by kind, not state
COUNT_KEYS = ("complete", "pruned", "failed", "running", "rejected", "invalid", "duplicate", "interrupted",
              "scored")


@dataclass(frozen=True)
class TrialRecord:
    """What the book needs to know of one stored trial."""

    number: int
    state: State
    kind: Kind | None = None
    values: Sequence[float] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    digest: str = ""   # structural hash of its architecture; "" before it was sampled
    requeued: bool = False   # failed with its worker and queued again: its retry holds its place in the budget


# counting ---------------------------------------------------------------------------------------------------------

def budget_used(records: Iterable[TrialRecord]) -> int:
    """Trials that count towards the budget: trained or failed, however they ended (one still running, such as a
    warm start's chosen trial waiting for a worker, is counted when it ends; one lost with its worker and queued
    again is counted through its retry)."""
    return sum(1 for r in records
               if r.kind in BUDGET_KINDS and r.state is not State.RUNNING and not r.requeued)


def counts(records: Iterable[TrialRecord]) -> dict[str, int]:
    """Trials per outcome, as summary.json and the progress line report them (keys in COUNT_KEYS order).

    Rejected, invalid, duplicate, interrupted and scored-only trials are counted by kind; the others by state (a
    pruned trial is ``trained`` and PRUNED; a failed one FAIL). Waiting (enqueued, not yet asked) trials are not counted.
    """
    result = dict.fromkeys(COUNT_KEYS, 0)
    by_state = {State.COMPLETE: "complete", State.PRUNED: "pruned", State.FAIL: "failed", State.RUNNING: "running"}
    for r in records:
        if r.kind in COUNTED_KINDS:
            result[r.kind.value] += 1
        elif r.state in by_state:
            result[by_state[r.state]] += 1
    return result


class Budget:
    """How many budgeted trials are used, and when to give up sampling.

    Samples that end before training (invalid, rejected, duplicate) cost no budget, so a space that yields nothing
    trainable would be sampled for ever: after ``miss_limit`` such samples in a row the search stops sampling.
    """

    def __init__(self, trials: int, used: int = 0):
        self.trials = trials
        self.used = used
        self.misses = 0
        self.miss_limit = max(200, 20 * trials)

    def has_room(self, in_flight: int) -> bool:
        """Whether another trial may start while ``in_flight`` trials are training."""
        return self.used + in_flight < self.trials

    def launched(self) -> None:
        self.misses = 0

    def missed(self) -> bool:
        """A sample ended before training; True once ``miss_limit`` did in a row."""
        self.misses += 1
        return self.misses >= self.miss_limit

    def spend(self) -> None:
        """A budgeted trial finished (complete, pruned or failed)."""
        self.used += 1


# de-duplication ---------------------------------------------------------------------------------------------------

class Dedup(Enum):
    """What to do with a sampled architecture."""

    TRAIN = "train"   # new: train it
    COPY = "copy"     # trained before: take that trial's values
    WAIT = "wait"     # training right now in another trial: wait for its result


@dataclass(frozen=True)
class Verdict:
    action: Dedup
    of: int | None = None   # the trial it copies or waits for


class TrialBook:
    """Structurally identical architectures are trained once: which trial owns each hash, which is training it, and
    which duplicates wait for it. Waiting trials are opaque to the book (the driver's live trial objects)."""

    def __init__(self) -> None:
        self._owner: dict[str, int] = {}             # hash -> trial that trained it (COMPLETE)
        self._training: dict[str, int] = {}          # hash -> trial in flight
        self._waiting: dict[str, list[Any]] = {}     # hash -> duplicates waiting for that trial's result

    def restore(self, records: Iterable[TrialRecord]) -> None:
        """On resume: every architecture a stored trial trained to completion is owned by the first such trial."""
        for r in records:
            if r.state is State.COMPLETE and r.kind is Kind.TRAINED:
                self._owner.setdefault(r.digest, r.number)

    def verdict(self, digest: str) -> Verdict:
        if digest in self._owner:
            return Verdict(Dedup.COPY, self._owner[digest])
        if digest in self._training:
            return Verdict(Dedup.WAIT, self._training[digest])
        return Verdict(Dedup.TRAIN)

    def start(self, digest: str, number: int) -> None:
        """Trial ``number`` trains ``digest``."""
        self._training[digest] = number

    def wait(self, digest: str, trial: Any) -> None:
        """``trial`` takes the result of the trial training ``digest`` once it settles."""
        self._waiting.setdefault(digest, []).append(trial)

    def completed(self, digest: str, number: int) -> None:
        """Trial ``number`` trained ``digest`` to completion: later samples copy it."""
        self._owner[digest] = number

    def settle(self, digest: str) -> list[Any]:
        """The training of ``digest`` ended (whichever way): returns the trials that waited for it."""
        self._training.pop(digest, None)
        return self._waiting.pop(digest, [])

    def owner(self, digest: str) -> int | None:
        return self._owner.get(digest)


# best so far and progress -----------------------------------------------------------------------------------------

def best(records: Iterable[TrialRecord], directions: Sequence[str],
         front: Iterable[TrialRecord] = ()) -> list[TrialRecord]:
    """The best trained trial (one objective), or the trained members of the Pareto ``front`` (several).

    The front is Optuna's (``study.best_trials``); duplicates carry their original's values, so a front over all
    trials holds the originals too, and only those are kept.
    """
    if len(directions) == 1:
        trained = [r for r in records if r.state is State.COMPLETE and r.kind is Kind.TRAINED]
        if not trained:
            return []
        pick = max if directions[0] == "maximize" else min
        return [pick(trained, key=lambda r: r.values[0])]
    return [r for r in front if r.kind is Kind.TRAINED]


def status_line(tally: Mapping[str, int], best_trials: Sequence[TrialRecord], trials: int,
                objectives: Sequence[str], final: bool = False) -> str:
    """The progress line printed after each finished trial (``final``: the last one of the search)."""
    done = tally["complete"] + tally["pruned"] + tally["failed"]
    if best_trials and len(objectives) == 1:
        text = f"best {objectives[0]} {best_trials[0].values[0]:.4f} (trial {best_trials[0].number})"
    elif best_trials:
        text = f"Pareto set of {len(best_trials)}"
    else:
        text = "no result yet"
    head = "finished" if final else "progress"
    return (f"{head}: {done}/{trials} trained, {tally['running']} running, {tally['failed']} failed, "
            f"{tally['pruned']} pruned, {tally['rejected'] + tally['invalid']} rejected/invalid, "
            f"{tally['duplicate']} duplicates"
            + (f", {tally['scored']} scored only" if tally.get("scored") else "") + f"; {text}")


__all__ = ["BUDGET_KINDS", "COUNT_KEYS", "Budget", "Dedup", "Kind", "State", "TrialBook", "TrialRecord", "Verdict",
           "best", "budget_used", "counts", "status_line"]
