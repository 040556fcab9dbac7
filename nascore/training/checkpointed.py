"""An output folder whose training survives a crash: the epoch loop shared by ``nascore train`` and
``nascore supernet train``.

    OUT/checkpoint.pt      the whole training state (Trainer.state_dict + what was trained), after every epoch
    OUT/history.jsonl      one JSON line per epoch

Both files are written atomically, the history after the checkpoint: a crash, Ctrl-C or kill -9 leaves the previous
epoch's pair intact. Opening the folder again continues from its checkpoint and ends with exactly the result an
uninterrupted run would have had (weights, optimiser, schedule position and every RNG are restored), provided the
checkpoint is of the same thing (its ``identity``: a graph's structural hash, a space's, the data) trained with the
same settings.

nascore writes into a folder only when it is absent, empty, or already its own: ``OUT/nascore-output.json``
(written before anything else, naming the kind of run) marks it, and a folder of an older nascore without the mark
is recognised by its checkpoint of the same kind. Any other folder is refused with a RunError naming the first file
found, so a user's own ``graph.yaml`` or ``metrics.json`` is never overwritten.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nascore.errors import RunError
from nascore.io.atomic import atomic_write_text
from nascore.training.trainer import TrainConfig, Trainer, read_checkpoint, write_checkpoint

CHECKPOINT = "checkpoint.pt"
HISTORY = "history.jsonl"
MARK = "nascore-output.json"   # this folder is nascore's: it may write (and overwrite) its own files here
# settings that may differ on resume without changing the result (where and how fast it runs)
RESUME_FREE = ("device", "threads")
AFRESH = "; delete it or pass resume=False (--no-resume) to train afresh"


class CheckpointedRun:
    """The folder ``out`` training the thing named by ``identity`` (a mapping of JSON-able values, stored in the
    checkpoint under ``"nascore"`` and compared on resume; ``extra`` is stored beside it, not compared); ``kind``
    names it in messages ("retrain", "supernet")."""

    def __init__(self, out: str | Path, identity: Mapping[str, Any], kind: str,
                 extra: Mapping[str, Any] | None = None):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise RunError("exists and is not a directory; expected an output folder", where=str(self.out))
        self.identity = dict(identity)
        self.record = {"kind": kind, **dict(extra or {}), **self.identity}
        self.kind = kind
        self.checkpoint = self.out / CHECKPOINT
        self.history_path = self.out / HISTORY

    def claim(self) -> None:
        """Make sure nascore may write into ``out``, and mark it as nascore's (creating it): absent, empty, marked
        by a run of this kind, or (an older nascore's) holding a checkpoint of this kind. Anything else is a
        RunError naming the first file found; nothing is written then."""
        import nascore

        mark = self.out / MARK
        if mark.is_file():
            try:
                kind = json.loads(mark.read_text(encoding="utf-8")).get("kind")
            except (OSError, ValueError, AttributeError):
                kind = None
            if kind == self.kind:
                return
            raise RunError(f"is the output folder of another kind of nascore run ({MARK} says {kind!r}, expected "
                           f"{self.kind!r}); use another output folder", where=str(self.out))
        # nascore's own hidden temporaries do not count (another data-parallel rank may be writing the mark)
        entries = sorted(p.name for p in self.out.iterdir() if not (p.name.startswith(".") and
                                                                    p.name.endswith(".tmp"))) if self.out.is_dir() else []
        if entries and not self._legacy():
            raise RunError(f"is not empty and not a nascore {self.kind} output folder (it holds {entries[0]!r}, "
                           f"and no {MARK} or {CHECKPOINT} of nascore); nascore does not write into a folder "
                           "holding files it did not write: use a new or empty output folder", where=str(self.out))
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(mark, json.dumps({"kind": self.kind, "nascore_version": nascore.__version__}) + "\n")

    def _legacy(self) -> bool:
        """A folder an older nascore wrote without the mark: it holds a checkpoint of this kind."""
        if not self.checkpoint.is_file():
            return False
        try:
            self.read()
        except RunError:
            return False
        return True

    def read(self) -> dict[str, Any]:
        """The checkpoint's mapping; a RunError naming it when it is not one of this kind of run."""
        state = read_checkpoint(self.checkpoint, advice=AFRESH)
        info = state.get("nascore")
        if not isinstance(info, Mapping) or "epoch" not in state or info.get("kind", "retrain") != self.kind:
            raise RunError(f"is not a nascore {self.kind} checkpoint (no matching 'nascore' record){AFRESH}",
                           where=str(self.checkpoint))
        return state

    def resume(self, config: TrainConfig, resume: bool = True,
               describe: Callable[[str, Mapping[str, Any]], str] | None = None, run: str | None = None
               ) -> tuple[dict[str, Any] | None, TrainConfig]:
        """(checkpoint state or None, the config to train with). A checkpoint of another identity, or one that
        is unfinished and was trained with other settings, is a RunError; a finished one is reported with its own
        settings. ``describe(key, record)`` words a record's identity value ``key`` in messages. Claims ``out``
        first (:meth:`claim`): a folder that is not nascore's is refused before anything is read or written.

        ``run``: this run's token (stored in its checkpoints' record as ``run``, by ``extra``). A checkpoint that
        carries it was written by this very run (a restarted data-parallel worker group): it is resumed even with
        ``resume=False``, which means "do not continue an earlier run", not "lose this run's own epochs"."""
        self.claim()
        if not self.checkpoint.is_file():
            return None, config
        if not resume:
            if run is None:
                return None, config
            try:
                state = self.read()
            except RunError:          # not readable: certainly not this run's own
                return None, config
            if state["nascore"].get("run") != run:
                return None, config
        else:
            state = self.read()
        info = state["nascore"]
        word = describe or (lambda key, record: f"{key} {record.get(key)}")
        for key, mine in self.identity.items():
            if info.get(key) != mine:
                raise RunError(f"holds a checkpoint of another {word(key, info)} than the one given "
                               f"({word(key, self.record)}); expected the same: use another output folder, or "
                               "resume=False (--no-resume) to overwrite it", where=str(self.out))
        done = int(state["epoch"])
        stored = state.get("config") if isinstance(state.get("config"), Mapping) else {}
        mine = config.to_dict()
        if done < config.epochs:
            changed = sorted(k for k in mine if k not in RESUME_FREE and stored.get(k) != mine[k])
            if changed:
                shown = ", ".join(f"{k} {stored.get(k)!r} -> {mine[k]!r}" for k in changed)
                raise RunError(f"holds a checkpoint trained with other settings ({shown}); expected the same to "
                               "resume: give the original settings, or resume=False (--no-resume) to train afresh",
                               where=str(self.out))
            return state, config
        # finished before (perhaps for more epochs): report it as it is, with its own settings
        return state, TrainConfig.from_dict({**{k: v for k, v in stored.items() if k not in RESUME_FREE},
                                             **{k: mine[k] for k in RESUME_FREE}}, f"{self.checkpoint}: config")

    def train(self, trainer: Trainer, state: Mapping[str, Any] | None, say: Callable[[str], None],
              after_epoch: Callable[[dict[str, Any]], None] | None = None, write: bool = True) -> int:
        """Restore ``state`` into ``trainer`` (when given), then train the remaining epochs, checkpointing after
        each; ``after_epoch(record)`` may add entries to the record before it is written. Returns the epoch the
        run resumed from. ``write=False`` (every data-parallel rank but the first) trains without writing."""
        resumed_from = 0
        if state is not None:
            trainer.load_state_dict(state, where=str(self.checkpoint))
            resumed_from = trainer.epoch
            if trainer.epoch >= trainer.config.epochs:
                say(f"{self.out}: all {trainer.epoch} epochs were trained already; reporting")
            else:
                say(f"{self.out}: resuming after epoch {trainer.epoch} of {trainer.config.epochs}")
        if write:
            self.out.mkdir(parents=True, exist_ok=True)
            # the history file follows the checkpoint: a crash between the two never leaves a line too many or few
            atomic_write_text(self.history_path, "".join(json.dumps(r) + "\n" for r in trainer.history))
        while trainer.epoch < trainer.config.epochs:
            record = trainer.train_epoch()
            if after_epoch is not None:
                after_epoch(record)
            if write:
                ckpt = trainer.state_dict()
                ckpt["nascore"] = dict(self.record)
                write_checkpoint(self.checkpoint, ckpt)
                _append_line(self.history_path, record)
            say(f"epoch {record['epoch']}/{trainer.config.epochs}: " + ", ".join(
                f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "seconds")
                and isinstance(v, (int, float))) + f" ({record['seconds']:.1f} s)")
        return resumed_from


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


__all__ = ["AFRESH", "CHECKPOINT", "CheckpointedRun", "HISTORY", "MARK", "RESUME_FREE"]
