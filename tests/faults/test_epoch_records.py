"""The numbers a user watches (issue 14, experiment tracking): the trainer's per-epoch record, which the driver
hands to TensorBoard, holds the drop-path rate beside the learning rate."""

from __future__ import annotations

import pytest

from nascore import Graph
from nascore.blocks.layers import DropPath
from nascore.training.data import load_dataset
from nascore.training.trainer import TrainConfig, Trainer


def _residual_graph() -> Graph:
    g = Graph("dropped", (1, 8, 8))
    g.add("stem", "conv_bn_act", out=8)
    g.add("b1", "mbconv", out=8, expand=1, se_ratio=0.0)
    g.add("b2", "mbconv", out=8, expand=1, se_ratio=0.0)
    g.add("gap", "global_avg_pool")
    g.add("fc", "linear", out=10)
    return g


@pytest.mark.parametrize("rate, expected", [(0.3, [0.0, 0.1, 0.2]), (0.0, [0.0])])
def test_the_drop_path_rate_is_in_every_epoch_record(tmp_path, rate, expected):
    config = TrainConfig(epochs=len(expected), batch_size=256, lr=0.05, drop_path=rate, device="cpu")
    trainer = Trainer.from_graph(_residual_graph(), load_dataset("digits"), config)
    records = []
    for _ in expected:
        records.append(trainer.train_epoch())
        deepest = [m for m in trainer.model.modules() if isinstance(m, DropPath)][-1]
        assert deepest.drop_prob == pytest.approx(records[-1]["drop_path"])    # the rate the epoch trained with
    assert [r["drop_path"] for r in records] == pytest.approx(expected)

    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nascore.nas.tracking import TensorBoardTracker

    tracker = TensorBoardTracker(tmp_path)
    for record in records:
        tracker.trial_epoch(0, record["epoch"], record)
    tracker.trial_end(0, "complete", {})
    events = EventAccumulator(str(tmp_path / "trial_00000"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("drop_path")] == [
        (i + 1, pytest.approx(v)) for i, v in enumerate(expected)]
    assert "lr" in events.Tags()["scalars"]
