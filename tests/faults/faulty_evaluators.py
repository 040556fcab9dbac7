"""Trial evaluators that fail on purpose, loaded by Ray workers through ``NASCORE_PLUGINS``.

Each wraps nascore's own Trainer and breaks one thing: raises in ``train_epoch`` or in ``make``, raises a
(simulated) CUDA out-of-memory error, kills its worker process once (a marker file, ``NASCORE_FAULTS_MARKER``,
makes the retry succeed) or every time, or returns metrics without ``val_acc``.
"""

from __future__ import annotations

import math
import os

from nascore import hookimpl
from nascore.nas.evaluators import EvaluatorSpec

FAULTS = ("raise", "raise_in_make", "oom", "die_once", "die_always", "no_val_acc", "nan_val_acc")
OOM_MESSAGE = "CUDA out of memory. Tried to allocate 20.00 GiB (simulated by tests/faults)"


class FaultyEvaluator:
    def __init__(self, trainer, fault: str):
        self.trainer = trainer
        self.fault = fault

    @property
    def model(self):
        return self.trainer.model

    def evaluate(self, split: str = "val") -> float:
        return self.trainer.evaluate(split)

    def train_epoch(self) -> dict:
        fault = self.fault
        if fault == "raise":
            raise ValueError("evaluator exploded on purpose")
        if fault == "oom":
            import torch

            raise torch.cuda.OutOfMemoryError(OOM_MESSAGE)
        if fault == "die_always":
            os._exit(1)
        if fault == "die_once":
            try:
                fd = os.open(os.environ["NASCORE_FAULTS_MARKER"], os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os._exit(1)
        record = self.trainer.train_epoch()
        if fault == "no_val_acc":
            record.pop("val_acc")
        if fault == "nan_val_acc":
            record["val_acc"] = math.nan
        return record


def _make(fault: str):
    def make(c):
        if fault == "raise_in_make":
            raise RuntimeError("evaluator could not be made (on purpose)")
        from nascore.training.trainer import Trainer

        return FaultyEvaluator(Trainer(c.model, c.splits, c.config, c.device), fault)
    return make


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec(f"fault_{fault}", _make(fault), doc=f"fails on purpose: {fault}") for fault in FAULTS]
