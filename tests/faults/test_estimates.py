"""The estimate must never disagree with the module (issue 14, the new-user probe).

- Even kernels: ``mbconv``, ``fused_mbconv``, ``inverted_residual``, ``shufflenet_v1`` / ``v2`` pad k//2 and add
  (or concatenate) their input back, so an even kernel came out one pixel short: ``graph info`` and ``export``
  agreed with the estimate and training crashed with a tensor-size RuntimeError. Their schema now refuses even
  kernels (a ParamError naming the parameter); every other block with a kernel builds exactly what it estimates.
- A plugin whose ``infer`` lies passed ``graph info``, ``--max-params`` and the export manifest: a search worker now
  checks each block's estimate against its module (meta device, cached) and fails the trial naming the plugin and
  both figures; an export runs the model once, node by node, before writing anything.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import optuna
import pytest
import torch
from click.testing import CliRunner

from nascore import BlockSpec, Graph, Param
from nascore.blocks.estimate import check_estimate, inference_of
from nascore.blocks.registry import BLOCKS, get_block
from nascore.blocks.tally import Tally
from nascore.cli import main
from nascore.errors import EstimateMismatch, NascoreError, ParamError, ShapeError
from nascore.graph.agreement import check_estimates, run_once
from nascore.nas.rundir import RunDir
from tests.conftest import ROOT
from tests.exporting.test_export import ensure_exporters
from tests.faults import faulty_plugins as fp

MUST_BE_ODD = ("mbconv", "fused_mbconv", "inverted_residual", "shufflenet_v1", "shufflenet_v2")
KERNEL_BLOCKS = sorted(name for name, spec in BLOCKS.items() if spec.param("kernel") is not None)


def _doc(block: str, **params) -> dict:
    return {"name": "probe", "input": [24, 16, 16], "nodes": [
        {"name": "body", "block": block, **params},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]}


# -- even kernels ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", KERNEL_BLOCKS)
def test_every_block_with_a_kernel_refuses_an_even_one_or_builds_what_it_estimates(name):
    """The class, not the case: for every registered block with a ``kernel`` (a block another plugin adds is
    checked too), each even kernel at stride 1 and 2, on odd and even sizes, with out = in (the shortcut) and
    out = 2 x in, is either refused by the schema (ParamError naming the parameter, 'odd') or estimated exactly:
    the module, built and run for real on the CPU, gives the estimated shapes and parameter count."""
    spec = get_block(name)
    base = {k: v for k, v in (spec.examples[0] if spec.examples else {}).items() if k != "inputs"}
    checked = refused = 0
    for kernel, stride, (c, out), side in itertools.product((2, 4, (3, 4), (4, 3)), (1, 2), ((24, 24), (24, 48)),
                                                            (15, 16)):
        params = {**base, "kernel": kernel}
        if spec.param("stride") is not None:
            params["stride"] = stride
        elif stride == 2:
            continue
        if spec.param("out") is not None:
            params["out"] = out
        try:
            resolved = spec.resolve(params)
        except ParamError as err:
            choices = spec.param("kernel").choices     # odd choices only, e.g. [1, 3, 5], refuse alike
            odd_only = choices is not None and all(c % 2 for c in choices)
            assert "parameter 'kernel'" in str(err) and ("expected odd" in str(err) or odd_only), str(err)
            refused += 1
            continue
        shapes = [(c, side, side)] * spec.arity.min
        try:
            estimated = inference_of(spec, shapes, resolved)
        except ShapeError:      # the estimate refuses these inputs: nothing promised
            continue
        check_estimate(spec, shapes, resolved)
        module = spec.module(spec.in_channels(shapes), **resolved).eval()
        with torch.no_grad():
            xs = [torch.randn(2, *s) for s in shapes]
            result = module(xs[0]) if spec.arity.single else module(xs)
        outs = list(result) if isinstance(result, (tuple, list)) else [result]
        assert [tuple(o.shape[1:]) for o in outs] == list(estimated.outputs.values()), (params, side)
        assert sum(p.numel() for p in module.parameters()) == estimated.params, (params, side)
        checked += 1
    assert checked or refused
    if name in MUST_BE_ODD:
        assert spec.param("kernel").odd and not checked


@pytest.mark.parametrize("block", MUST_BE_ODD)
@pytest.mark.parametrize("kernel, shown", [(4, "got 4"), ([3, 4], "got (3, 4)"), (2, "got 2")])
def test_an_even_kernel_is_a_param_error_naming_the_parameter(block, kernel, shown):
    out = 48 if block == "shufflenet_v1" else 24
    doc = _doc(block, kernel=kernel, out=out, **({"stride": 2} if block == "shufflenet_v1" else {}))
    with pytest.raises(ParamError) as caught:
        Graph.from_dict(doc, "probe.yaml")
    message = str(caught.value)
    for part in ("probe.yaml", "node 'body'", "parameter 'kernel'", shown, "expected odd int or [int, int] in [1, 31]"):
        assert part in message, message
    Graph.from_dict(_doc(block, kernel=5, out=out, **({"stride": 2} if block == "shufflenet_v1" else {})))


def test_graph_info_of_the_issue_reproduction_is_one_line(tmp_path):
    """`nascore graph info` of an mbconv with kernel 4 at stride 1 used to succeed (and training crashed)."""
    path = tmp_path / "even.yaml"
    path.write_text("name: even\ninput: [3, 32, 32]\nnodes:\n  - {name: stem, block: conv_bn_act, out: 16}\n"
                    "  - {name: b1, block: mbconv, out: 16, kernel: 4}\n  - {name: gap, block: global_avg_pool}\n"
                    "  - {name: fc, block: linear, out: 10}\n")
    result = CliRunner().invoke(main, ["graph", "info", str(path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "node 'b1'" in result.output and "parameter 'kernel': got 4, expected odd" in result.output


def test_plain_convolutions_keep_even_kernels_and_run_as_estimated():
    """conv_bn_act / depthwise_separable / pools have no shortcut: a 2x2 or 4x4 kernel (a patchify stem) is fine,
    and its estimate is what the module does."""
    g = Graph.from_dict({"name": "patchify", "input": [3, 17, 17], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 16, "kernel": 4, "stride": 4},
        {"name": "mix", "block": "conv_bn_act", "out": 16, "kernel": 2},
        {"name": "dw", "block": "depthwise_separable", "out": 24, "kernel": [2, 3]},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]})
    check_estimates(g)
    run_once(g, g.build(), torch.randn(2, 3, 17, 17))


# -- a plugin whose infer lies --------------------------------------------------------------------------------------


@pytest.fixture
def liars(fresh_plugins):
    fresh_plugins.register_plugin(fp.LyingBlocks(), name="liars")
    check_estimate.cache_clear()
    return fresh_plugins


def _liar_graph(block: str) -> Graph:
    return Graph.from_dict({"name": "lying", "input": [1, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "bad", "block": block},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]}, "lying.yaml")


LIES = {   # block -> what the error must say (8 input channels, out 32: a 1x1 conv counted, a 3x3 with bias built)
    "lies_about_params": ("its infer estimates 256 parameters, its module has 2,336",),
    "lies_about_shape": ("its infer estimates output 32x8x8, its module gives 32x4x4",),
    "fails_to_run": ("8x8x8", "RuntimeError"),
}


@pytest.mark.parametrize("block", LIES)
def test_a_lying_infer_passes_analysis_but_not_the_estimate_check(liars, block):
    graph = _liar_graph(block)
    graph.analyse()                        # weight-free: it believes the formula, as graph info does
    with pytest.raises(EstimateMismatch) as caught:
        check_estimates(graph)
    message = str(caught.value)
    for part in ("lying.yaml", "node 'bad'", f"block {block!r} of plugin 'liars'", *LIES[block]):
        assert part in message, message
    assert "\n" not in message


def test_the_check_runs_once_per_block_shapes_and_params():
    built = []

    def module(in_channels, out):
        built.append(out)
        return torch.nn.Conv2d(in_channels, out, 1, bias=False)

    def infer(in_shapes, out):
        t = Tally()
        return t.result(out=t.conv(in_shapes[0], out, 1))

    spec = BlockSpec("counted", module=module, infer=infer, params=(Param("out", int, 4),), doc="counted")
    check_estimate.cache_clear()
    for _ in range(3):
        check_estimate(spec, [(3, 8, 8)], {"out": 4})
    check_estimate(spec, [(3, 8, 8)], {"out": 5})
    check_estimate(spec, [(3, 9, 9)], {"out": 4})
    assert built == [4, 5, 4]


def test_a_search_worker_fails_the_trial_naming_the_plugin_and_both_figures(liars):
    """What the driver's constraints read (256) is not what would train (2,336): the worker refuses before training;
    its exception is the trial's failure reason (pool.StepFailed -> FAIL, kind failed)."""
    from nascore.nas.worker import TrialWorker

    worker = TrialWorker("digits", None, {}, threads=1, device="cpu")
    assert _liar_graph("lies_about_params").analyse().params == 88 + 256 + 330
    with pytest.raises(EstimateMismatch, match=r"node 'bad': block 'lies_about_params' of plugin 'liars': its infer "
                                               r"estimates 256 parameters, its module has 2,336"):
        worker.start(_liar_graph("lies_about_params").to_dict(), {"epochs": 1})
    assert worker.trainer is None
    honest = _liar_graph("lies_about_params").to_dict()
    honest["nodes"][1] = {"name": "bad", "block": "conv_bn_act", "out": 32}
    assert "latency_ms" in worker.start(honest, {"epochs": 1})


@pytest.mark.parametrize("block", LIES)
def test_an_export_runs_the_model_before_writing_and_names_the_node(liars, tmp_path, block):
    from nascore.exporting.package import export

    ensure_exporters()
    out = tmp_path / "exported"
    with pytest.raises(EstimateMismatch) as caught:
        export(_liar_graph(block), out, formats="weights")
    message = str(caught.value)
    for part in ("node 'bad'", f"block {block!r} of plugin 'liars'"):
        assert part in message, message
    assert list(tmp_path.iterdir()) == []      # nothing written, no temporary left


def test_the_cli_export_of_a_lying_plugin_is_one_line(liars, tmp_path):
    ensure_exporters()
    path = tmp_path / "lying.yaml"
    _liar_graph("lies_about_params").save(path)
    result = CliRunner().invoke(main, ["export", str(path), "-o", str(tmp_path / "o"), "--format", "weights"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "256 parameters, its module has 2,336" in result.output
    assert not (tmp_path / "o").exists()


LIAR_SPACE = """\
name: liar
search: {data: digits, objectives: [val_acc], strategy: random, pruner: none, constraints: {max_params: 1000},
         train: {batch_size: 64}}
graph:
  input: [1, 8, 8]
  nodes:
    - {name: stem, block: conv_bn_act, out: 8}
    - {name: bad, block: lies_about_params, out: {choice: [16]}}
    - {name: gap, block: global_avg_pool}
    - {name: fc, block: linear, out: 10}
"""


@pytest.mark.slow
def test_a_search_fails_the_lying_trial_with_its_reason_and_finishes(tmp_path):
    """End to end, Ray workers loading the lying plugin (NASCORE_PLUGINS, a child process: one Ray start): the
    sample passes --max-params 1000 on its lie (386 estimated; 1,426 real), the worker fails the trial naming the
    plugin and both figures, and the search finishes with a summary."""
    space = tmp_path / "liar.yaml"
    space.write_text(LIAR_SPACE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               NASCORE_PLUGINS="tests.faults.lying_plugin", RAY_AUTH_MODE="disabled")
    proc = subprocess.run([sys.executable, "-m", "nascore.cli", "search", str(space), "--runs", str(tmp_path / "runs"),
                           "--trials", "1", "--epochs", "1", "--workers", "1", "--cpus-per-trial", "1"],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = next((tmp_path / "runs").iterdir())
    trials = RunDir.open(run).load_study().get_trials(deepcopy=False)
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL], trials
    reason = trials[0].user_attrs["reason"]
    assert trials[0].user_attrs["kind"] == "failed" and trials[0].user_attrs["params"] == 386
    for part in ("EstimateMismatch", "node 'bad'", "block 'lies_about_params' of plugin 'tests.faults.lying_plugin'",
                 "its infer estimates 128 parameters, its module has 1,168"):
        assert part in reason, reason
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "finished" and summary["counts"]["failed"] == 1, summary


def test_a_nascore_error_never_escapes_as_another_type(liars):
    """The checks raise NascoreErrors only (the CLI prints them as one line)."""
    for block in LIES:
        for check in (lambda g: check_estimates(g), lambda g: run_once(g, g.build(), torch.randn(2, 1, 8, 8))):
            with pytest.raises(NascoreError):
                check(_liar_graph(block))
