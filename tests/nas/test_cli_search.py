"""The search side of the command line: search, runs show, strategies, datasets, graph scale."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nascore import Graph
from nascore.cli import main
from tests.conftest import GRAPHS, SPACES


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.slow
def test_search_then_runs_show(local_ray, tmp_path):
    result = invoke("search", SPACES / "nb201.yaml", "--runs", tmp_path, "--trials", 2, "--epochs", 1,
                    "--workers", 2, "--strategy", "random", "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "finished: 2/2 trained" in result.output
    run = next(p for p in tmp_path.iterdir() if p.name.startswith("nb201-"))
    shown = invoke("runs", "show", run, "--json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["state"] == "finished" and report["best"][0]["trial"] in {t["number"] for t in report["trials"]}
    assert {t["kind"] for t in report["trials"]} <= {"trained", "duplicate", "invalid", "rejected"}
    table = invoke("runs", "show", run)
    assert "best: trial" in table.output and "COMPLETE" in table.output


@pytest.mark.parametrize("args, fragment", [
    (("search",), "exactly one of SPACE or --resume"),
    (("search", "missing.yaml"), "missing.yaml: file not found"),
    (("search", SPACES / "mbconv.yaml", "--strategy", "tpee"), "did you mean 'tpe'"),
    (("search", SPACES / "mbconv.yaml", "--strategy", "evolution", "--objective", "val_acc", "--objective",
      "params"), "single-objective"),
    (("search", SPACES / "mbconv.yaml", "--data", "imagenet"), "unknown dataset 'imagenet'"),
    (("runs", "show", "nowhere"), "no such run directory"),
])
def test_search_errors_are_one_line(args, fragment, tmp_path):
    result = invoke(*args, *(("--runs", tmp_path) if args[0] == "search" and len(args) > 1 else ()))
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


def test_strategies_and_datasets_are_listed():
    strategies = json.loads(invoke("strategies", "--json").output)
    assert {"random", "grid", "tpe", "nsga2", "gp", "evolution"} <= {s["name"] for s in strategies}
    assert "digits" in invoke("datasets").output


def test_graph_scale_compound(tmp_path):
    out = tmp_path / "b1.yaml"
    result = invoke("graph", "scale", GRAPHS / "efficientnet_b0.yaml", "-o", out, "--width", 1.0, "--depth", 1.1,
                    "--resolution", 240)
    assert result.exit_code == 0, result.output
    assert Graph.load(out).analyse().params == 7_794_184
    bad = invoke("graph", "scale", GRAPHS / "efficientnet_b0.yaml", "-o", out, "--compound", "1.2")
    assert bad.exit_code == 2 and "three numbers" in bad.output
