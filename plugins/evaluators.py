"""The built-in trial evaluator: train from scratch with nascore's trainer (the same one ``nascore train`` uses)."""

from __future__ import annotations

from nascore import hookimpl
from nascore.nas.evaluators import EvaluatorSpec


def _train(candidate):
    from nascore.training.trainer import Trainer

    return Trainer(candidate.model, candidate.splits, candidate.config, candidate.device)


@hookimpl
def nascore_evaluators():
    return [EvaluatorSpec("train", _train, "Train the candidate from scratch: SGD/AdamW, warm-up + cosine, label "
                          "smoothing, scheduled drop-path, AMP and channels-last on CUDA.")]
