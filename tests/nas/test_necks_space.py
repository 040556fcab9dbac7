"""The detection-neck space (search_spaces/necks.yaml) on its data set, scaled_digits: the data are generated
deterministically, every neck choice builds and trains a step, and a real short search runs end to end."""

from __future__ import annotations

import json

import numpy as np
import optuna
import pytest
import torch

from nascore.errors import DataError
from nascore.nas.space import SearchSpace
from nascore.training.data import load_dataset
from tests.conftest import SPACES

NECKS = {
    "fpn": {"neck/fpn/out": 16},
    "fpn_pan": {"neck/fpn_pan/out": 16},
    "bifpn": {"neck/bifpn/out": 16, "neck/bifpn/repeats": 2},
    "asff": {"neck/asff/out": 16},
}
SMALL = {"copies": 1, "canvas": 32}


@pytest.fixture(scope="module")
def scaled():
    return load_dataset("scaled_digits", **SMALL)


def test_scaled_digits_are_deterministic_multi_scale_and_split_by_source(scaled):
    again = load_dataset("scaled_digits", **SMALL)
    assert torch.equal(scaled.train.x, again.train.x) and torch.equal(scaled.test.y, again.test.y)
    assert scaled.input_shape == (1, 32, 32) and scaled.num_classes == 10
    assert scaled.sizes() == {"train": 1078, "val": 360, "test": 359}     # the digits' 60/20/20 split, once each
    other = load_dataset("scaled_digits", **SMALL, seed=1)
    assert not torch.equal(scaled.train.x, other.train.x)
    assert torch.equal(scaled.train.y, other.train.y)                      # same digits, other scales and places
    # the digits really vary in size: the side of each image's bounding box of inked pixels
    ink = scaled.train.x[:, 0] > 0
    rows = ink.any(2).sum(1).numpy()
    assert rows.min() <= 10 and rows.max() >= 24 and len(np.unique(rows)) > 10
    two = load_dataset("scaled_digits", copies=2)
    assert two.sizes() == {"train": 2156, "val": 720, "test": 718}


def test_scaled_digits_bad_parameters_are_named():
    with pytest.raises(DataError, match=r"dataset 'scaled_digits'.*min_size=20, max_size=10.*min_size <= max_size"):
        load_dataset("scaled_digits", min_size=20, max_size=10)
    with pytest.raises(DataError, match=r"max_size=40, canvas=32"):
        load_dataset("scaled_digits", max_size=40)
    with pytest.raises(DataError, match=r"dataset 'scaled_digits'.*parameter 'copies'.*expected int in \[1, 100\]"):
        load_dataset("scaled_digits", copies=0)


def test_the_space_offers_every_neck_with_width_and_repeats():
    space = SearchSpace.load(SPACES / "necks.yaml")
    names = dict(space.describe())
    assert names["neck/block"] == 'choice of "fpn", "fpn_pan", "bifpn", "asff"'
    assert {"neck/fpn/out", "neck/fpn_pan/out", "neck/bifpn/out", "neck/bifpn/repeats", "neck/asff/out"} <= set(names)
    assert space.settings["data"] == "scaled_digits"


@pytest.mark.parametrize("neck", sorted(NECKS))
def test_every_neck_builds_and_trains_a_step(neck, scaled):
    space = SearchSpace.load(SPACES / "necks.yaml")
    graph = space.fixed({"neck/block": neck, **NECKS[neck]})
    assert graph.analyse().outputs == {"fc": (10,)}
    torch.manual_seed(0)
    model = graph.build().train()
    x, y = scaled.train.x[:16].float() / 255, scaled.train.y[:16]
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    moved = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    neck = {k for k in before if k.startswith("neck")}
    assert neck and neck <= moved             # every weight of the neck was trained (fusion weights included)


@pytest.mark.slow
def test_a_short_search_on_the_neck_space_runs_end_to_end(local_ray, tmp_path):
    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir

    run = search(SPACES / "necks.yaml", runs_root=tmp_path, trials=2, epochs=1, workers=1, strategy="random",
                 pruner="none", data_params={"copies": 1}, train={"batch_size": 64, "lr": 0.05}, progress=None)
    study = RunDir.open(run).load_study()
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("kind") == "trained"]
    assert len(trials) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert all(t.params["neck/block"] in NECKS for t in trials)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and (run / "best" / "graph.yaml").is_file()
