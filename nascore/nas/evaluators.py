"""Trial evaluators as plugins: how a search turns an architecture into metrics.

A plugin's ``nascore_evaluators()`` hook returns :class:`EvaluatorSpec` entries. Per trial the search calls the
spec's ``make`` (an :class:`EvaluatorFactory`) with a :class:`Candidate` (the built model, its graph, the data, the
trial's training settings and the search's ``evaluator_options``, checked against ``EvaluatorSpec.options``) and
drives what it returns through the :class:`Evaluator` contract:
``train_epoch()`` once per epoch (reporting to the pruner in between), then ``evaluate("test")``, then reads
``model`` for the weights. The built-in ``train`` evaluator is :class:`nascore.training.trainer.Trainer`; a
weight-sharing or proxy evaluator plugs in the same way, with no base class to inherit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from nascore.blocks.spec import Param, resolve_params
from nascore.errors import EvaluatorError, ParamError
from nascore.ext.registry import Registry

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from nascore.graph.core import Graph
    from nascore.training.data import Splits
    from nascore.training.trainer import TrainConfig


@dataclass(frozen=True)
class Candidate:
    """One trial's architecture as an evaluator receives it.

    ``model``: ``graph.build()`` on ``device`` (wrapped in a ``Resize`` when the graph's input side differs from the
    data's); ``graph``: the sampled architecture; ``splits``: the search's data set; ``config``: the trial's
    :class:`~nascore.training.trainer.TrainConfig` (epochs, seed, ...); ``options``: the search's
    ``evaluator_options``, checked against the evaluator's declared options and completed with their defaults.
    """

    model: nn.Module
    graph: Graph | None
    splits: Splits
    config: TrainConfig
    device: torch.device
    options: Mapping[str, Any] = field(default_factory=dict)


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
    """``make(candidate)``: the :class:`Evaluator` of one trial.

    Raise :class:`~nascore.errors.TrialFailed` for a candidate that cannot be evaluated: the search records the
    trial as failed and goes on.
    """

    def __call__(self, candidate: Candidate) -> Evaluator:
        ...


@dataclass(frozen=True)
class EvaluatorSpec:
    """One evaluator. ``options``: what a search's ``evaluator_options`` may set, typed and ranged like block
    parameters (unknown ones are an error naming them). ``epochs``: how many times a trial calls ``train_epoch``
    when the evaluator fixes it (one for an evaluator that scores without training; None: the search's
    ``epochs``). ``check(options, space)``: called once when a search starts, with the checked options and the
    :class:`~nascore.nas.space.SearchSpace`; it raises a NascoreError when the two cannot work together.
    ``objectives``: the search objectives the evaluator can serve (None: all of them; a proxy, which reports no
    test accuracy, leaves out ``test_acc``); a search asking for another is refused when it starts."""

    name: str
    make: EvaluatorFactory
    doc: str = ""
    aliases: tuple[str, ...] = ()
    options: tuple[Param, ...] = ()
    epochs: int | None = None
    check: Callable[[Mapping[str, Any], Any], None] | None = None
    objectives: tuple[str, ...] | None = None

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked and completed with defaults; an EvaluatorError naming the option otherwise."""
        where = f"evaluator {self.name!r}"
        try:
            return resolve_params(self.options, dict(options or {}), where, noun="option")
        except ParamError as err:
            raise EvaluatorError(err.message, where=f"{where}: {err.where}") from None


EVALUATORS: Registry[EvaluatorSpec] = Registry("evaluator", "nascore_evaluators", EvaluatorSpec, EvaluatorError)


def make_evaluator(name: str, candidate: Candidate) -> Evaluator:
    """The evaluator ``name`` made for ``candidate``, its options checked first."""
    from dataclasses import replace

    spec = EVALUATORS.get(name)
    return spec.make(replace(candidate, options=spec.resolve(candidate.options)))


__all__ = ["EVALUATORS", "Candidate", "Evaluator", "EvaluatorFactory", "EvaluatorSpec", "make_evaluator"]
