"""Trial evaluators as plugins: how a search turns an architecture into metrics.

An evaluator is made per trial by ``make(model, splits, config, device)`` and must offer what the search calls:
``train_epoch() -> dict`` (with ``val_acc``), ``evaluate(split) -> float`` and a ``model`` attribute. The built-in
``train`` evaluator is :class:`nascore.training.trainer.Trainer`; a weight-sharing or proxy evaluator plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nascore.errors import NascoreError
from nascore.ext.registry import Registry


class EvaluatorError(NascoreError):
    """An evaluator name or its behaviour is wrong."""


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    make: Callable[..., Any]
    doc: str = ""
    aliases: tuple[str, ...] = ()


EVALUATORS: Registry[EvaluatorSpec] = Registry("evaluator", "nascore_evaluators", EvaluatorSpec, EvaluatorError)


def make_evaluator(name: str, model, splits, config, device):
    return EVALUATORS.get(name).make(model, splits, config, device)
