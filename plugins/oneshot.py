"""The ``supernet`` evaluator: score a candidate with the weights it inherits from a trained supernet.

    nascore supernet train search_spaces/mbconv.yaml -o supernet/
    nascore search search_spaces/mbconv.yaml --evaluator supernet --evaluator-option checkpoint=supernet/ \
        --strategy evolution --trials 500

Per trial: the candidate's module (``graph.build()``, built by the search as for any evaluator) receives the
supernet's tensors for that point, its batch-norm statistics are recomputed on ``calibration_batches`` training
batches (each path's statistics differ), and it is scored on validation data. No training; the trial's weights are
the inherited, recalibrated ones, so ``nascore export RUN`` ships them and ``nascore train RUN --fine-tune``
continues from them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from nascore import hookimpl
from nascore.blocks.spec import Param
from nascore.errors import EvaluatorError, NascoreError, TrialFailed
from nascore.nas.evaluators import EvaluatorSpec

_LOCK = threading.Lock()
_LOADED: dict[tuple[str, bool, float], Any] = {}   # one supernet per worker process, reused by its trials


def _supernet(folder: str, allow_unfinished: bool):
    from nascore.oneshot.training import WEIGHTS_FILE, load_supernet

    path = Path(folder).resolve()
    weights = path / WEIGHTS_FILE
    key = (str(path), allow_unfinished, weights.stat().st_mtime if weights.is_file() else 0.0)
    with _LOCK:
        if key not in _LOADED:
            _LOADED.clear()
            _LOADED[key] = load_supernet(path, allow_unfinished=allow_unfinished)
        return _LOADED[key]


class SupernetEvaluator:
    """One candidate scored with inherited weights: ``train_epoch`` recalibrates and scores once."""

    def __init__(self, candidate: Any):
        from nascore.training.trainer import Resize, Trainer

        options = candidate.options
        supernet, info = _supernet(options["checkpoint"], options["allow_unfinished"])
        if candidate.graph is None:
            raise EvaluatorError("needs the candidate's graph; expected a search to give it", where="evaluator "
                                 "'supernet'")
        core = candidate.model.model if isinstance(candidate.model, Resize) else candidate.model
        try:
            state = supernet.extract(candidate.graph)
        except NascoreError as err:
            raise TrialFailed(f"the supernet cannot serve this point: {err}", reason="not in the supernet") from None
        core.load_state_dict(state)
        self.trainer = Trainer(candidate.model, candidate.splits, candidate.config, candidate.device)
        self.batches = options["calibration_batches"]
        self.batch_size = options["calibration_batch_size"]
        self.record: dict[str, Any] | None = None

    @property
    def model(self):
        return self.trainer.model

    def train_epoch(self) -> dict[str, Any]:
        if self.record is None:
            from nascore.oneshot.training import recalibrated_accuracy

            start = time.perf_counter()
            accuracy, used = recalibrated_accuracy(self.model, self.trainer, self.batches, self.batch_size)
            self.record = {"epoch": 1, "val_acc": accuracy, "calibration_batches": used,
                           "seconds": time.perf_counter() - start}
        return dict(self.record)

    def evaluate(self, split: str = "val") -> float:
        return self.trainer.evaluate(split)


def _check(options: dict[str, Any], space: Any) -> None:
    """The supernet must have been trained on this very space (its graph, scale and compound sections)."""
    from nascore.oneshot.training import space_digest

    supernet, info = _supernet(options["checkpoint"], options["allow_unfinished"])
    if space_digest(space) != info.get("space_hash"):
        raise EvaluatorError(f"the supernet in {options['checkpoint']} was trained on space {info.get('space')!r} "
                             f"(hash {info.get('space_hash')}), not on this one ({space.name!r}, hash "
                             f"{space_digest(space)}); expected the same graph, scale and compound sections",
                             where="evaluator 'supernet': option 'checkpoint'")


OPTIONS = (
    Param("checkpoint", str, doc="folder written by `nascore supernet train`"),
    Param("calibration_batches", int, 8, "training batches the batch-norm statistics are recomputed on", low=1),
    Param("calibration_batch_size", int, None, "their size (none: the search's training batch size)", low=2),
    Param("allow_unfinished", bool, False, "score with the last epoch's weights of an unfinished training"),
)


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec(
        "supernet", SupernetEvaluator,
        "Score with weights inherited from a trained supernet (`nascore supernet train`): batch norm recalibrated "
        "on training batches, accuracy on validation data; no training (single-path one-shot).",
        options=OPTIONS, epochs=1, check=_check)]
