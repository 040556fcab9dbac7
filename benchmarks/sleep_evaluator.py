"""A nascore evaluator plugin whose trials do a fixed amount of work (sleeping), for measuring search overhead.

Load it into a search with ``NASCORE_PLUGINS=benchmarks.sleep_evaluator`` (the repository on PYTHONPATH); Ray's
local workers inherit the variable, so they load it too.
"""

from __future__ import annotations

import os
import time

from nascore import hookimpl
from nascore.nas.evaluators import EvaluatorSpec

SECONDS = float(os.environ.get("NASCORE_SLEEP_SECONDS", "1.0"))


class SleepEvaluator:
    def __init__(self, candidate):
        self.model = candidate.model
        self.epochs = candidate.config.epochs
        self.epoch = 0

    def train_epoch(self):
        time.sleep(SECONDS / self.epochs)
        self.epoch += 1
        return {"epoch": self.epoch, "val_acc": 0.5 + 0.01 * self.epoch}

    def evaluate(self, split="val"):
        return 0.5


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec("sleep", SleepEvaluator, "Sleep a fixed time per trial (benchmarks only).")]
