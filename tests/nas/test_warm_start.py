"""Warm start: M samples scored by a zero-cost proxy, only the best k trained, the rest recorded as scored only;
its settings checked by name; a resume neither scores again nor loses the scored-only records. Also the proxy
evaluators' objectives: a proxy search asking for test_acc is refused when it starts."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from nascore.cli import main
from nascore.errors import EvaluatorError, ParamError
from nascore.nas.config import SearchConfig
from nascore.nas.driver import search
from nascore.nas.rundir import RunDir
from tests.conftest import SPACES

FAST = {"batch_size": 32, "lr": 0.1}


@pytest.mark.parametrize("layer, message", [
    ({"warm_start_proxy": "naswot"}, "parameter 'warm_start_candidates': missing with warm_start_proxy 'naswot'"),
    ({"warm_start_proxy": "naswot", "warm_start_candidates": 8},
     "parameter 'warm_start_top': missing with warm_start_proxy"),
    ({"warm_start_top": 2}, "parameter 'warm_start_top': got 2 without warm_start_proxy"),
    ({"warm_start_proxy": "naswot", "warm_start_candidates": 2, "warm_start_top": 3},
     "parameter 'warm_start_top': got 3, expected at most warm_start_candidates (2)"),
    ({"warm_start_proxy": "naswot", "warm_start_candidates": 9, "warm_start_top": 3, "trials": 2},
     "parameter 'warm_start_top': got 3, expected at most trials (2)"),
    ({"warm_start_proxy": "naswot", "warm_start_candidates": 0, "warm_start_top": 1},
     "parameter 'warm_start_candidates': got 0"),
    ({"warm_start_options": {"checkpoint": "sn/"}},
     "parameter 'warm_start_options': got {'checkpoint': 'sn/'} without warm_start_proxy"),
])
def test_bad_warm_start_settings_name_the_setting(layer, message):
    with pytest.raises(ParamError) as info:
        SearchConfig.merge(layer, where="space.yaml: search")
    assert str(info.value).startswith("space.yaml: search: parameter"), str(info.value)
    assert message in str(info.value)


def test_good_warm_start_settings_are_kept():
    config = SearchConfig.merge({"warm_start_proxy": "naswot", "warm_start_candidates": 8, "warm_start_top": 2})
    assert (config.warm_start_proxy, config.warm_start_candidates, config.warm_start_top) == ("naswot", 8, 2)


@pytest.mark.parametrize("overrides, error, message", [
    ({"warm_start_proxy": "train"}, ParamError, "warm_start_proxy': got 'train', which trains"),
    ({"warm_start_proxy": "naswott"}, ParamError, "did you mean 'naswot'"),
    ({"warm_start_proxy": "naswot", "evaluator": "snip"}, ParamError, "evaluator 'snip', which trains nothing"),
    ({"warm_start_proxy": "supernet"}, ParamError,
     "parameter 'warm_start_options': evaluator 'supernet': option 'checkpoint': missing"),
    ({"warm_start_proxy": "naswot", "warm_start_options": {"batch": 8}}, ParamError,
     "parameter 'warm_start_options': evaluator 'naswot': option 'batch'"),
    ({"evaluator": "naswot", "objectives": ["test_acc"]}, EvaluatorError,
     "evaluator 'naswot': cannot serve objective test_acc"),
])
def test_searches_that_cannot_work_are_refused_before_any_trial(overrides, error, message, tmp_path):
    settings = {"warm_start_candidates": 4, "warm_start_top": 2} if "warm_start_proxy" in overrides else {}
    with pytest.raises(error) as info:
        search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=2, progress=None, **settings, **overrides)
    assert message in str(info.value)
    for run in tmp_path.iterdir():   # the run directory may exist, but no trial was asked
        assert not (run / "study.db").exists() or not RunDir.open(run).load_study().get_trials()


def test_the_command_line_passes_the_warm_start_flags(tmp_path):
    result = CliRunner().invoke(main, ["search", str(SPACES / "mbconv.yaml"), "--runs", str(tmp_path),
                                       "--warm-start-top", "2"])
    assert result.exit_code == 2 and "warm_start_top': got 2 without warm_start_proxy" in result.output, \
        result.output
    result = CliRunner().invoke(main, ["search", str(SPACES / "mbconv.yaml"), "--runs", str(tmp_path),
                                       "--warm-start", "naswot", "--warm-start-candidates", "2",
                                       "--warm-start-top", "3"])
    assert result.exit_code == 2 and "at most warm_start_candidates (2)" in result.output, result.output


@pytest.mark.slow
def test_warm_start_trains_exactly_the_best_k_and_records_the_rest_as_scored(local_ray, tmp_path):
    from nascore.nas.plots import plot_run
    from nascore.nas.runs import describe_run, format_run

    lines: list[str] = []
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=2, epochs=1, workers=1, strategy="random",
                 train=FAST, pruner="none", warm_start_proxy="naswot", warm_start_candidates=6, warm_start_top=2,
                 progress=lines.append)
    study = RunDir.open(run).load_study()
    trials = study.get_trials(deepcopy=False)
    trained = [t for t in trials if t.user_attrs.get("kind") == "trained"]
    scored = [t for t in trials if t.user_attrs.get("kind") == "scored"]
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained), \
        [(t.number, t.state, t.user_attrs.get("reason")) for t in trials]
    candidates = trained + scored
    assert len(candidates) == 6 and len({t.user_attrs["hash"] for t in candidates}) == 6
    assert all(t.user_attrs["proxy_name"] == "naswot" and isinstance(t.user_attrs["proxy"], float)
               for t in candidates)
    assert min(t.user_attrs["proxy"] for t in trained) >= max(t.user_attrs["proxy"] for t in scored)
    assert all(t.state == optuna.trial.TrialState.FAIL and "not in the top 2" in t.user_attrs["reason"]
               for t in scored)
    assert not any(RunDir.open(run).trial_dir(t.number).exists() for t in scored)    # never trained
    # told as soon as it fell out of the top 2, not after all 6 were scored (open trials slow every ask)
    assert min(t.datetime_complete for t in scored) < max(t.datetime_start for t in candidates)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["counts"]["scored"] == 4 and summary["counts"]["complete"] == 2
    assert summary["best"][0]["trial"] in {t.number for t in trained}
    assert summary["warm_start"] == {"done": True, "proxy": "naswot", "scored": 6,
                                     "top": sorted((t.number for t in trained),
                                                   key=lambda n: -study.trials[n].user_attrs["proxy"])}
    assert any(line.startswith("warm start: scored 6 candidates with naswot") for line in lines), lines
    table = format_run(describe_run(run))
    header = next(line for line in table.splitlines() if line.lstrip().startswith("#"))
    assert header.split()[-3:] == ["naswot", "ep", "note"]                  # the proxy score column
    assert "warm start: 6 candidates scored with naswot" in table and table.count("scored only") == 4
    assert {p.name for p in plot_run(run)} == {"history.png", "proxy.png"}

    # a resume with a larger budget skips the warm start: no new scoring, nothing lost, one more trained
    search(resume=run, trials=3, progress=None)
    after = RunDir.open(run).load_study().get_trials(deepcopy=False)
    assert [t.number for t in after if t.user_attrs.get("kind") == "scored"] == [t.number for t in scored]
    assert sum(t.user_attrs.get("kind") == "trained" for t in after) == 3
    assert sum("proxy" in t.user_attrs for t in after) == 6


def test_a_worker_scores_a_candidate_as_its_trial_would_train_it_and_names_what_it_cannot_score():
    """The warm start's scores come from the workers: the graph built with the trial's seed (so a proxy sees the
    weights the trial would train from); a candidate the evaluator cannot score comes back with the reason."""
    import torch

    from nascore.graph.core import Graph
    from nascore.nas.evaluators import EVALUATORS
    from nascore.nas.worker import TrialWorker
    from nascore.zerocost import draw_batches, score

    options = EVALUATORS.get("naswot").resolve({})
    worker = TrialWorker("digits", None, {}, threads=1, device="cpu")
    doc = {"input": [1, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "block", "block": "mbconv", "out": 8, "expand": 3},
        {"name": "gap", "block": "global_avg_pool"}, {"name": "fc", "block": "linear", "out": 10}]}
    train = {"seed": 7, **FAST, "epochs": 1}
    first, again = (worker.score(doc, train, "naswot", options) for _ in range(2))
    torch.manual_seed(7)
    graph = Graph.from_dict(doc)
    expected = score("naswot", graph.build(), draw_batches(worker.splits, 64, 1, seed=0), graph)
    assert first == again == {"score": pytest.approx(expected, rel=1e-6)}
    assert worker.score(doc, {**train, "seed": 8}, "naswot", options) != first       # other weights, other codes

    no_rectifier = {"input": [1, 8, 8], "nodes": [{"name": "gap", "block": "global_avg_pool"},
                                                  {"name": "fc", "block": "linear", "out": 10}]}
    result = worker.score(no_rectifier, train, "naswot", options)
    assert set(result) == {"reason"} and "rectifier" in result["reason"], result
