"""A proxy as a search evaluator: the trial's "training" is one scoring of the untrained candidate.

With a proxy evaluator the metric a search ranks by, ``val_acc``, is the proxy's score (higher is better for every
proxy, the ``params`` and ``macs`` baselines included); the history also keeps it as ``proxy``. Nothing is trained:
the evaluator specs fix one epoch (a later call reports the same score); ``evaluate("test")`` is NaN (there is no
test accuracy without training) and the trial's weights are the initial ones.
"""

from __future__ import annotations

import math

import torch.nn as nn

from nascore.blocks.spec import Param
from nascore.errors import EvaluatorError
from nascore.nas.evaluators import Candidate
from nascore.zerocost.data import draw_batches
from nascore.zerocost.proxies import PROXIES, score

OPTIONS: tuple[Param, ...] = (
    Param("batch_size", int, 64, "samples per batch", low=2),
    Param("batches", int, 1, "batches the score is averaged over (zico: gradient samples; one batch is halved)",
          low=1),
    Param("seed", int, 0, "which training samples are drawn; the same for every trial, so candidates are ranked "
                          "on the same data", low=0),
)


class ProxyEvaluator:
    """The :class:`~nascore.nas.evaluators.Evaluator` of one candidate under the proxy ``name``."""

    def __init__(self, name: str, candidate: Candidate):
        self.name = name
        self.candidate = candidate
        self._score: float | None = None

    @property
    def model(self) -> nn.Module:
        return self.candidate.model

    @property
    def score(self) -> float:
        """The proxy's score, computed once (on the first epoch)."""
        if self._score is None:
            c = self.candidate
            batches = []
            if PROXIES[self.name].data:
                batches = draw_batches(c.splits, c.options["batch_size"], c.options["batches"], c.options["seed"],
                                       device=c.device)
            self._score = score(self.name, c.model, batches, c.graph, seed=c.options.get("seed", 0))
        return self._score

    def train_epoch(self) -> dict[str, float]:
        """``{"val_acc": score, "proxy": score, "proxy_name": name}``: ``val_acc`` is the proxy's score."""
        return {"val_acc": self.score, "proxy": self.score, "proxy_name": self.name}

    def evaluate(self, split: str) -> float:
        """The score for ``"val"``, NaN for ``"test"`` (nothing was trained)."""
        if split == "val":
            return self.score
        if split == "test":
            return math.nan
        raise EvaluatorError(f"got split {split!r}, expected 'val' or 'test'", where=f"evaluator {self.name!r}")


def make(name: str):
    """The factory of the proxy ``name``'s evaluator (``EvaluatorSpec.make``)."""
    def factory(candidate: Candidate) -> ProxyEvaluator:
        return ProxyEvaluator(name, candidate)
    factory.__name__ = f"make_{name}"
    return factory
