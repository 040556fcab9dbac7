"""The proxies as search evaluators: the contract (val_acc is the score, test is NaN, options checked), and a real
search on the proxy over a local Ray."""

from __future__ import annotations

import json
import math

import optuna
import pytest
import torch

from nascore.errors import EvaluatorError
from nascore.nas.evaluators import EVALUATORS, Candidate, make_evaluator
from nascore.nas.space import SearchSpace
from nascore.oneshot.paths import sample_path, uniform_rule
from nascore.training.data import load_dataset
from nascore.training.trainer import TrainConfig
from nascore.zerocost import PROXIES, draw_batches, score
from tests.conftest import SPACES

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def candidate():
    graph, _ = sample_path(SearchSpace.load(SPACES / "mbconv.yaml"), uniform_rule(0, 1))
    splits = load_dataset("digits", None)
    return Candidate(graph.build(), graph, splits, TrainConfig(), torch.device("cpu"), {"batch_size": 32})


def test_every_proxy_is_an_evaluator_with_its_paper_in_the_doc():
    assert set(PROXIES) <= set(EVALUATORS.names())
    assert "Mellor" in EVALUATORS.get("naswot").doc and "Li et al." in EVALUATORS.get("zico").doc
    assert {p.name for p in EVALUATORS.get("snip").options} == {"batch_size", "batches", "seed"}
    assert EVALUATORS.get("params").options == () and EVALUATORS.get("jacov").epochs == 1


def test_val_acc_is_the_score_and_test_is_nan(candidate):
    evaluator = make_evaluator("naswot", candidate)
    metrics = evaluator.train_epoch()
    expected = score("naswot", candidate.model, draw_batches(candidate.splits, 32, 1, 0), candidate.graph)
    assert metrics == {"val_acc": expected, "proxy": expected, "proxy_name": "naswot"}
    assert evaluator.train_epoch() == metrics and evaluator.evaluate("val") == expected
    assert math.isnan(evaluator.evaluate("test")) and evaluator.model is candidate.model
    with pytest.raises(EvaluatorError, match="expected 'val' or 'test'"):
        evaluator.evaluate("train")
    assert make_evaluator("macs", Candidate(candidate.model, candidate.graph, candidate.splits, TrainConfig(),
                                            torch.device("cpu"))).train_epoch()["val_acc"] == \
        candidate.graph.analyse().macs


def test_options_are_checked(candidate):
    from dataclasses import replace

    with pytest.raises(EvaluatorError, match="batch_size"):
        make_evaluator("zico", replace(candidate, options={"batch_size": 0}))
    with pytest.raises(EvaluatorError, match="unknown option"):
        make_evaluator("params", candidate)                     # the baselines read no data


@pytest.mark.slow
def test_a_search_on_naswot_finishes(local_ray, tmp_path):
    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir
    from nascore.nas.runs import describe_run, format_run

    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, evaluator="naswot", trials=3, workers=1, epochs=1,
                 strategy="random", evaluator_options={"batch_size": 32}, progress=None)   # (the spec fixes 1)
    trials = RunDir.open(run).load_study().get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3, [t.user_attrs.get("reason") for t in trials]
    for t in done:
        history = t.user_attrs["history"]
        assert len(history) == 1 and t.values[0] == history[0]["proxy"] and math.isnan(t.user_attrs["test_acc"])
        assert t.user_attrs["proxy_name"] == "naswot" and t.user_attrs["proxy"] == t.values[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["best"][0]["values"][0] == max(t.values[0] for t in done)
    assert summary["val_acc_is"] == "the naswot score (no training)"
    table = format_run(describe_run(run))
    assert "best: trial" in table and "val_acc is the naswot score" in table


def test_the_docs_say_what_the_ranking_benchmark_measured():
    """Each proxy's doc states its Kendall tau and whether it beat params, as the committed result file has it."""
    from pathlib import Path

    from nascore_plugins.zerocost import RANKING_TAU

    result = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results" /
                         "zerocost_ranking.json").read_text())
    for row in result["rows"]:
        assert RANKING_TAU[row["proxy"]] == round(row["val_acc_mean"]["kendall_tau"], 2), row["proxy"]
        doc = EVALUATORS.get(row["proxy"]).doc
        assert ("NOT BETTER THAN PARAMS" in doc) == (row.get("beats_params") is False), row["proxy"]
