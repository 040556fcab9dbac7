"""Experiment tracking: the numbers of a search as TensorBoard event files, written by the driver alone.

    RUN/tensorboard/trial_00003/   one TensorBoard run per trained trial: every numeric metric of each epoch's
                                   record at step = epoch, under its own name (the trainer's loss, train_acc,
                                   val_acc, lr, drop_path, seconds; a proxy's or the supernet's score as val_acc),
                                   and when the trial completes its final metrics (final/test_acc, final/params, ...)
    RUN/tensorboard/search/        best/<objective>: the best value so far, at step = trials finished

``tensorboard --logdir RUN/tensorboard`` overlays every trial's curves. The driver receives each epoch's metrics
anyway (it reports them to Optuna), so it is the single writer, as it is of the study; a resumed search appends new
event files to the same folders. Tracking never breaks a search: the first exception a tracker raises is reported
in one line and tracking is off for the rest of the run.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from nascore.errors import raised

MISSING = "TensorBoard logging off: pip install tensorboard"


class Tracker(Protocol):
    """Where the driver sends the numbers of a search; every method returns nothing and may do nothing."""

    def trial_epoch(self, number: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Trial ``number`` finished ``epoch`` (from 1) with ``metrics`` (the evaluator's record)."""

    def trial_end(self, number: int, state: str, metrics: Mapping[str, Any]) -> None:
        """Trial ``number`` ended in ``state`` (complete, pruned, failed); ``metrics``: its final ones, if any."""

    def search_progress(self, finished: int, best: Mapping[str, float]) -> None:
        """``finished`` trials have ended; ``best``: the best value so far of each objective (none yet: empty)."""

    def close(self) -> None:
        """The search ends (or stops): write out everything."""


class NullTracker:
    """Tracking off."""

    def trial_epoch(self, number: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        pass

    def trial_end(self, number: int, state: str, metrics: Mapping[str, Any]) -> None:
        pass

    def search_progress(self, finished: int, best: Mapping[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of a record worth plotting: every int or float (not a bool) but the epoch, which is the step."""
    return {k: float(v) for k, v in metrics.items()
            if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def trial_folder(number: int) -> str:
    return f"trial_{number:05d}"


class TensorBoardTracker:
    """One ``SummaryWriter`` per running trial (closed when it ends) and one for the search, under ``root``."""

    def __init__(self, root: str | Path, flush_secs: int = 10):
        from torch.utils.tensorboard import SummaryWriter

        self.root = Path(root)
        self._writer = SummaryWriter
        self._flush_secs = flush_secs
        self._trials: dict[int, tuple[Any, int]] = {}   # number -> (writer, last epoch)
        self._search: Any = None
        self._finished = -1

    def _open(self, folder: str) -> Any:
        return self._writer(str(self.root / folder), flush_secs=self._flush_secs)

    def trial_epoch(self, number: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        writer = self._trials[number][0] if number in self._trials else self._open(trial_folder(number))
        self._trials[number] = (writer, epoch)
        for key, value in scalars(metrics).items():
            writer.add_scalar(key, value, epoch)

    def trial_end(self, number: int, state: str, metrics: Mapping[str, Any]) -> None:
        writer, epoch = self._trials.pop(number, (None, 0))
        if metrics:
            writer = writer or self._open(trial_folder(number))
            for key, value in scalars(metrics).items():
                writer.add_scalar(f"final/{key}", value, epoch)
        if writer is not None:
            writer.close()

    def search_progress(self, finished: int, best: Mapping[str, float]) -> None:
        if finished <= self._finished:    # nothing new has ended (a duplicate or a warm start's bookkeeping)
            return
        self._finished = finished
        self._search = self._search or self._open("search")
        for objective, value in best.items():
            self._search.add_scalar(f"best/{objective}", float(value), finished)
        self._search.flush()

    def close(self) -> None:
        writers = [w for w, _ in self._trials.values()] + ([self._search] if self._search is not None else [])
        self._trials, self._search = {}, None
        for writer in writers:
            writer.close()


class Guarded:
    """Forwards to ``tracker`` until it raises: that first exception is said once, and tracking is off after it."""

    def __init__(self, tracker: Tracker, say: Callable[[str], None], name: str = "TensorBoard"):
        self.tracker: Tracker = tracker
        self.say = say
        self.name = name

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self.tracker, method)(*args)
        except Exception as exc:  # noqa: BLE001 - tracking is a convenience: never let it end a search
            broken, self.tracker = self.tracker, NullTracker()
            self.say(f"{self.name} logging off: {raised(f'its {method}', exc)}")
            if method != "close":
                with contextlib.suppress(Exception):
                    broken.close()

    def trial_epoch(self, number: int, epoch: int, metrics: Mapping[str, Any]) -> None:
        self._call("trial_epoch", number, epoch, metrics)

    def trial_end(self, number: int, state: str, metrics: Mapping[str, Any]) -> None:
        self._call("trial_end", number, state, metrics)

    def search_progress(self, finished: int, best: Mapping[str, float]) -> None:
        self._call("search_progress", finished, best)

    def close(self) -> None:
        self._call("close")


def open_tracker(enabled: bool, root: str | Path, say: Callable[[str], None]) -> Tracker:
    """The search's tracker: TensorBoard under ``root`` when ``enabled`` and installed (said in one line when it
    is not, or cannot start), otherwise one that does nothing."""
    if not enabled:
        return NullTracker()
    if importlib.util.find_spec("tensorboard") is None:
        say(MISSING)
        return NullTracker()
    try:
        return Guarded(TensorBoardTracker(root), say)
    except Exception as exc:  # noqa: BLE001 - a broken install: search without it
        say(f"TensorBoard logging off: {raised('starting it', exc)}")
        return NullTracker()


def progress_of(tally: Mapping[str, int], top: Sequence[Any], objectives: Sequence[str],
                directions: Sequence[str]) -> tuple[int, dict[str, float]]:
    """``(finished, best)`` for :meth:`Tracker.search_progress` from the driver's standing: the trials that ended
    (complete, pruned, failed: what the progress line counts as trained) and each objective's best value among
    ``top`` (the best trial, or the Pareto set, whose members hold every objective's best)."""
    finished = tally["complete"] + tally["pruned"] + tally["failed"]
    best: dict[str, float] = {}
    for i, (objective, direction) in enumerate(zip(objectives, directions)):
        values = [r.values[i] for r in top if r.values]
        if values:
            best[objective] = (max if direction == "maximize" else min)(values)
    return finished, best


__all__ = ["MISSING", "Guarded", "NullTracker", "TensorBoardTracker", "Tracker", "open_tracker", "progress_of",
           "scalars", "trial_folder"]
