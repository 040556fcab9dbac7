"""Trial evaluators as plugins: how a search turns an architecture into metrics.

A plugin's ``nascore_evaluators()`` hook returns :class:`EvaluatorSpec` entries. Per trial the search calls the
spec's ``make`` (an :class:`EvaluatorFactory`) and drives what it returns through the :class:`Evaluator` contract:
``train_epoch()`` once per epoch (reporting to the pruner in between), then ``evaluate("test")``, then reads
``model`` for the weights. The built-in ``train`` evaluator is :class:`nascore.training.trainer.Trainer`; a
weight-sharing or proxy evaluator plugs in the same way, with no base class to inherit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from nascore.errors import EvaluatorError
from nascore.ext.registry import Registry

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nascore.training.data import Splits
    from nascore.training.trainer import TrainConfig


class Evaluator(Protocol):
    """What a search calls on the object an evaluator makes for one trial."""

    @property
    def model(self) -> nn.Module:
        """The module ``make`` was given; its ``state_dict()`` becomes the trial's weights (without the ``Resize``
        wrapper a search adds when the graph's input side differs from the data's)."""

    def train_epoch(self) -> dict[str, float]:
        """Run one epoch; return its metrics as a dict: a finite ``val_acc`` at least (what the pruner and the
        objective read; without it the trial fails), and any other numbers, which the trial's history keeps."""

    def evaluate(self, split: str) -> float:
        """Top-1 accuracy on ``split`` (``"val"`` or ``"test"``), in eval mode."""


class EvaluatorFactory(Protocol):
    """``make(model, splits, config, device)``: the :class:`Evaluator` of one trial.

    ``model`` is the built candidate (already on ``device``), ``splits`` the search's data set, ``config`` the
    trial's :class:`~nascore.training.trainer.TrainConfig` (epochs, seed, ...), ``device`` a ``torch.device``.
    Raise :class:`~nascore.errors.TrialFailed` for a candidate that cannot be evaluated: the search records the
    trial as failed and goes on.
    """

    def __call__(self, model: nn.Module, splits: Splits, config: TrainConfig, device: torch.device) -> Evaluator:
        ...


@dataclass(frozen=True)
class EvaluatorSpec:
    name: str
    make: EvaluatorFactory
    doc: str = ""
    aliases: tuple[str, ...] = ()


EVALUATORS: Registry[EvaluatorSpec] = Registry("evaluator", "nascore_evaluators", EvaluatorSpec, EvaluatorError)


def make_evaluator(name: str, model: nn.Module, splits: Splits, config: TrainConfig,
                   device: torch.device) -> Evaluator:
    return EVALUATORS.get(name).make(model, splits, config, device)


__all__ = ["EVALUATORS", "Evaluator", "EvaluatorFactory", "EvaluatorSpec", "make_evaluator"]
