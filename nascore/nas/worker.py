"""One trial slot: builds a sampled graph, measures it, trains it epoch by epoch, hands back weights.

A plain class, so it runs in-process in tests; the actor pool (:mod:`nascore.nas.pool`) wraps it as a Ray actor that
is reused across trials (actor start-up is the dominant per-trial cost of Ray Tune's defaults). The driver calls
``epoch`` once per epoch, which lets it report to Optuna and prune between epochs while remaining the single writer
of the study.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from nascore.training.trainer import Resize


class TrialWorker:
    """Holds one data set and at most one trial's training state at a time."""

    def __init__(self, data: str, data_root: str | None, data_params: dict[str, Any], threads: int | None = None,
                 device: str = "auto", evaluator: str = "train", evaluator_options: dict[str, Any] | None = None):
        from nascore.training.data import load_dataset
        from nascore.training.trainer import pick_device

        if threads:
            torch.set_num_threads(max(1, int(threads)))
        self.splits = load_dataset(data, data_root, **data_params)
        self.device = pick_device(device)
        self.evaluator = evaluator
        self.evaluator_options = dict(evaluator_options or {})
        self.trainer = None
        self.started = 0.0

    def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": str(self.device), "threads": torch.get_num_threads()}

    def start(self, graph_doc: dict[str, Any], train: dict[str, Any], max_latency_ms: float | None = None,
              precise_latency: bool = False) -> dict[str, Any]:
        """Build the model and measure its latency; returns ``rejected`` when it breaks the latency limit.

        First every block's estimate (what the driver's constraints and the run's records read) is checked against
        its module (:func:`nascore.graph.agreement.check_estimates`): an EstimateMismatch fails the trial, its reason
        naming the node, the block, its plugin and both figures.

        Latency is always recorded; it is measured with more repeats when a constraint or objective depends on it.
        """
        from nascore.graph.agreement import check_estimates
        from nascore.graph.document import graph_from_dict
        from nascore.nas.evaluators import Candidate, make_evaluator
        from nascore.training.trainer import TrainConfig, measure_latency

        self.trainer = None
        self.started = time.perf_counter()
        graph = graph_from_dict(graph_doc, "trial graph")
        check_estimates(graph)   # a plugin whose infer lies fails the trial here, named (cached per block use)
        model = self._build(graph, train, train.get("drop_path") or None)   # ScheduledDropPath grows it in training
        precise = precise_latency or max_latency_ms is not None
        latency = measure_latency(model, self.splits.input_shape, self.device, repeats=20 if precise else 7,
                                  warmup=5 if precise else 2) * 1e3
        info = {"latency_ms": latency, "device": str(self.device)}
        if max_latency_ms is not None and latency > max_latency_ms:
            info["rejected"] = f"latency {latency:.2f} ms > max_latency_ms {max_latency_ms}"
            return info
        candidate = Candidate(model, graph, self.splits, TrainConfig.from_dict(train, "train"), self.device,
                              self.evaluator_options)
        self.trainer = make_evaluator(self.evaluator, candidate)
        return info

    def score(self, graph_doc: dict[str, Any], train: dict[str, Any], evaluator: str,
              options: dict[str, Any]) -> dict[str, Any]:
        """A warm start's score: ``evaluator`` (one that trains nothing: a zero-cost proxy, the supernet) run once on
        the graph built as its trial would train it (same seed, so the same initial weights). ``{"score": value}``,
        or ``{"reason": why}`` when the evaluator cannot score it (a NaN score, a graph it does not fit)."""
        from nascore.errors import NascoreError
        from nascore.graph.document import graph_from_dict
        from nascore.nas.evaluators import Candidate, make_evaluator
        from nascore.training.trainer import TrainConfig

        graph = graph_from_dict(graph_doc, "trial graph")
        try:
            model = self._build(graph, train, None)
            candidate = Candidate(model, graph, self.splits, TrainConfig.from_dict(train, "train"), self.device,
                                  options)
            return {"score": float(make_evaluator(evaluator, candidate).train_epoch()["val_acc"])}
        except NascoreError as err:   # TrialFailed (a NaN score) among them
            return {"reason": str(err)}

    def _build(self, graph: Any, train: dict[str, Any], drop_path_rate: float | None) -> torch.nn.Module:
        """``graph``'s module with the trial's seed, resized to the graph's input side, on this worker's device."""
        torch.manual_seed(int(train.get("seed", 0)))
        model = graph.build(drop_path_rate=drop_path_rate)
        if tuple(graph.input_shape[1:]) != tuple(self.splits.input_shape[1:]):
            model = Resize(model, tuple(graph.input_shape[1:]))
        return model.to(self.device)

    def epoch(self) -> dict[str, Any]:
        """Train one epoch; returns its metrics (``val_acc`` among them)."""
        return self.trainer.train_epoch()

    def finish(self) -> dict[str, Any]:
        """Test accuracy, training time, and the trained weights as safetensors bytes (CPU tensors)."""
        from safetensors.torch import save

        trainer, self.trainer = self.trainer, None
        test_acc = trainer.evaluate("test")
        model = trainer.model.model if isinstance(trainer.model, Resize) else trainer.model
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        return {"test_acc": test_acc, "train_seconds": time.perf_counter() - self.started, "weights": save(state)}

    def abandon(self) -> None:
        self.trainer = None
