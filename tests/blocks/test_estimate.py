"""A block with a module and a schema only (no ``infer``) works end to end, measured on the meta device; a given
``infer`` that disagrees with its module is caught by ``check_block`` and ``nascore blocks --check``; a plugin's
crashing ``infer`` is a PluginError naming the plugin, not the user's ShapeError."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
import torch
from click.testing import CliRunner

import nascore
from nascore import Graph
from nascore.blocks.estimate import estimate, measure
from nascore.blocks.registry import get_block
from nascore.blocks.testing import check_block, check_blocks
from nascore.errors import PluginError, ShapeError
from tests.blocks import meta_blocks as mb
from tests.conftest import ROOT


@pytest.fixture
def meta_blocks(fresh_plugins):
    fresh_plugins.register_plugin(mb.MetaBlocks(), name="meta_blocks")
    return fresh_plugins


@pytest.fixture
def bad_blocks(meta_blocks):
    meta_blocks.register_plugin(mb.BadBlocks(), name="bad_blocks")
    return meta_blocks


def _doc(block: str = "plain_conv", **params) -> dict:
    return {"name": "tiny", "input": [3, 16, 16], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "mid", "block": block, **({"out": 16, "stride": 2} if not params else params)},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]}


def _cli(*args: str):
    from nascore.cli import main

    return CliRunner().invoke(main, list(args))


# -- a block without infer, end to end -------------------------------------------------------------------------------


def test_block_without_infer_is_listed(meta_blocks):
    result = _cli("blocks", "--json")
    assert result.exit_code == 0, result.output
    blocks = {b["name"]: b for b in json.loads(result.stdout)["blocks"]}
    assert blocks["plain_conv"]["plugin"] == "meta_blocks"
    assert [p["name"] for p in blocks["plain_conv"]["params"]] == ["out", "kernel", "stride"]


def test_block_without_infer_is_analysed_like_the_equivalent_builtin(meta_blocks):
    plain = Graph.from_dict(_doc("plain_conv"), "plain.yaml").analyse()
    builtin = Graph.from_dict(_doc("conv_bn_act"), "builtin.yaml").analyse()
    assert plain.nodes["mid"].outputs == builtin.nodes["mid"].outputs == {"out": (16, 8, 8)}
    assert (plain.nodes["mid"].n_params, plain.nodes["mid"].macs) == \
        (builtin.nodes["mid"].n_params, builtin.nodes["mid"].macs) == (8 * 16 * 9 + 32, 8 * 16 * 9 * 64 + 2 * 16 * 64)
    assert (plain.params, plain.macs) == (builtin.params, builtin.macs)


def test_block_without_infer_builds_and_its_analysis_equals_the_built_module(meta_blocks):
    graph = Graph.from_dict(_doc("plain_conv"), "plain.yaml")
    assert graph.build()(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    with torch.device("meta"):
        model = graph.build()
    real, predicted = measure(model, [graph.input_shape]), graph.analyse()
    assert (real.params, real.macs) == (predicted.params, predicted.macs)


def test_block_without_infer_in_a_search_space_sample(meta_blocks):
    from nascore.nas.space import SearchSpace

    doc = {"name": "s", "graph": {"input": [3, 16, 16], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "mid", "block": {"choice": ["plain_conv", "conv_bn_act"]}, "out": {"choice": [8, 16]},
         "kernel": {"choice": [3, 5]}},
        {"name": "gap", "block": "global_avg_pool"}, {"name": "fc", "block": "linear", "out": 10}]}}
    space = SearchSpace(doc, "space.yaml")
    chosen = {"mid/block": "plain_conv", "mid/out": 16, "mid/kernel": 5}
    sampled = space.fixed(chosen).analyse()
    reference = space.fixed({**chosen, "mid/block": "conv_bn_act"}).analyse()
    assert sampled.nodes["mid"].block == "plain_conv"
    assert (sampled.params, sampled.macs) == (reference.params, reference.macs)


def test_block_without_infer_is_exported_and_loads(meta_blocks, tmp_path):
    from nascore.exporting.package import export

    graph = Graph.from_dict(_doc("plain_conv"), "plain.yaml")
    out = export(graph, tmp_path / "export", formats="weights")
    model = nascore.load_model(out)
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 10)


def test_several_outputs_are_named_out0_out1_and_can_be_picked(meta_blocks):
    doc = {"name": "two", "input": [3, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "split", "block": "split", "out": 4},
        {"name": "a", "block": "conv_bn_act", "inputs": ["split:out0"], "out": 4},
        {"name": "sum", "block": "add", "inputs": ["a", "split:out1"]}]}
    graph = Graph.from_dict(doc, "two.yaml")
    assert graph.analyse().nodes["split"].outputs == {"out0": (4, 8, 8), "out1": (4, 8, 8)}
    assert graph.analyse().nodes["split"].n_params == 4 * 4
    assert graph.build()(torch.randn(2, 3, 8, 8)).shape == (2, 4, 8, 8)


def test_a_multi_output_builtin_without_its_formula_is_estimated_exactly(meta_blocks):
    shapes = [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    formula = get_block("fpn").infer(shapes, out=8)
    measured = estimate(get_block("meta_fpn"), shapes, {"out": 8})
    assert list(measured.outputs) == ["out0", "out1", "out2"]
    assert list(measured.outputs.values()) == list(formula.outputs.values())
    assert (measured.params, measured.macs) == (formula.params, formula.macs)


# every MAC rule (convolutions, linear, batch / group / layer / instance norm, adaptive pooling, mean, nearest and
# bilinear upsampling), checked by measuring built-in modules whose formulas are exact
FORMULA_CASES = [
    ("conv_bn_act", [(8, 16, 16)], dict(out=16, stride=2)),
    ("conv_bn_act", [(8, 16, 16)], dict(out=16, norm="group", act="prelu")),
    ("conv_bn_act", [(8, 16, 16)], dict(out=16, norm="layer")),
    ("conv_bn_act", [(8, 16, 16)], dict(out=16, norm="instance")),
    ("conv_bn_act", [(8, 16, 16)], dict(out=16, norm="none")),
    ("mbconv", [(16, 16, 16)], dict(out=24, kernel=5, se_ratio=0.25)),
    ("linear", [(64,)], dict(out=10)),
    ("global_avg_pool", [(64, 7, 7)], {}),
    ("upsample", [(8, 7, 7)], {}),
    ("upsample", [(8, 7, 7), (8, 14, 14)], dict(mode="bilinear")),
    ("psp", [(64, 12, 12)], {}),
    ("inception_v3_a", [(64, 9, 9)], {}),
]


@pytest.mark.parametrize("name, in_shapes, params", FORMULA_CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(FORMULA_CASES)])
def test_estimate_equals_the_exact_formula_of_builtins(name, in_shapes, params):
    spec = get_block(name)
    resolved = spec.resolve(params)
    formula = spec.infer(in_shapes, **resolved)
    measured = estimate(dataclasses.replace(spec, name=f"{name}_unformulated", infer=None, aliases=()), in_shapes,
                        resolved)
    assert list(measured.outputs.values()) == list(formula.outputs.values())
    assert (measured.params, measured.macs) == (formula.params, formula.macs)


def test_estimate_is_cached_by_block_shapes_and_params(meta_blocks):
    spec = get_block("plain_conv")
    estimate.cache_clear()
    first = estimate(spec, [(8, 16, 16)], {"out": 16, "kernel": 3, "stride": 2})
    assert estimate.cache_info().misses == 1 and estimate.cache_info().hits == 0
    Graph.from_dict(_doc("plain_conv"), "again.yaml").analyse()       # the same node in a new graph
    again = estimate(spec, [(8, 16, 16)], {"stride": 2, "kernel": 3, "out": 16})
    assert estimate.cache_info().hits == 2 and estimate.cache_info().misses == 1
    assert again == first and again is not first                       # a copy: callers cannot spoil the cache
    estimate(spec, [(8, 16, 16)], {"out": 16, "kernel": 3, "stride": 1})
    assert estimate.cache_info().misses == 2


def test_a_module_that_cannot_take_the_shapes_is_a_one_line_shape_error_naming_the_node(meta_blocks):
    doc = {"name": "late", "input": [3, 16, 16], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "late", "block": "plain_conv", "out": 8}]}              # a convolution on a flat (8,) input
    with pytest.raises(ShapeError) as info:
        Graph.from_dict(doc, "late.yaml")
    message = str(info.value)
    assert message.startswith("late.yaml: node 'late': block 'plain_conv' cannot take inputs 8: "), message
    assert "RuntimeError" in message and "\n" not in message


def test_check_block_without_infer_runs_the_module(meta_blocks):
    assert check_block(get_block("plain_conv"), [(3, 8, 8)], out=8).outputs == {"out": (8, 8, 8)}
    assert check_block(get_block("split"), [(6, 8, 8)], out=4).outputs == {"out0": (3, 8, 8), "out1": (4, 8, 8)}


# -- a given infer that lies or crashes ------------------------------------------------------------------------------


def test_a_lying_infer_is_caught_by_check_block_naming_the_plugin(bad_blocks):
    assert check_block(get_block("exact_conv"), [(3, 8, 8)], out=8).params == 3 * 8 * 9 + 16
    with pytest.raises(AssertionError, match=r"block 'lying_conv' of plugin 'bad_blocks': params 232 != predicted 233"):
        check_block(get_block("lying_conv"), [(3, 8, 8)], out=8)


def test_blocks_check_exits_1_naming_each_block_and_plugin_that_disagrees(bad_blocks):
    result = _cli("blocks", "--check")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert {re.search(r"block '(\w+)' of plugin '(\w+)'", e).groups() for e in errors} == {
        ("lying_conv", "bad_blocks"), ("broken_infer", "bad_blocks"), ("dict_out", "bad_blocks")}, errors
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if "[" in line}
    assert lines["plain_conv"] == lines["split"] == lines["exact_conv"] == lines["meta_fpn"] == "ok"
    assert lines["conv_bn_act"] == lines["needs_example"] == "skipped"
    assert lines["add"] == lines["linear"] == "ok"
    assert "required" in next(line for line in result.stdout.splitlines() if "needs_example" in line)


def test_blocks_check_passes_for_good_plugins_and_reports_json(meta_blocks):
    result = _cli("blocks", "--check", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["block"]: r for r in json.loads(result.stdout)["blocks"]}
    assert rows["plain_conv"] == {"block": "plain_conv", "plugin": "meta_blocks", "status": "ok",
                                  "detail": "2 examples"}
    assert not [r for r in rows.values() if r["status"] == "failed"]


def test_a_crashing_infer_is_a_plugin_error_naming_the_plugin_not_a_shape_error(bad_blocks):
    with pytest.raises(PluginError) as info:
        Graph.from_dict(_doc("broken_infer"), "plugged.yaml")
    message = str(info.value)
    assert not isinstance(info.value, ShapeError)
    assert message.startswith("plugged.yaml: node 'mid': block 'broken_infer' of plugin 'bad_blocks'"), message
    assert "TypeError" in message and "\n" not in message


def test_a_module_returning_a_dict_is_a_plugin_error(bad_blocks):
    with pytest.raises(PluginError, match="block 'dict_out' of plugin 'bad_blocks'.*tuple or list"):
        Graph.from_dict(_doc("dict_out", inputs=["stem"]), "plugged.yaml")


def test_check_blocks_skips_required_parameters_without_examples(meta_blocks):
    results = {r.block: r for r in check_blocks([get_block("needs_example"), get_block("exact_conv")])}
    assert results["needs_example"].status == "skipped" and "out" in results["needs_example"].detail
    assert results["exact_conv"].status == "ok" and results["exact_conv"].plugin == "meta_blocks"


# -- the README's plugin example is real -----------------------------------------------------------------------------


def test_readme_plugin_examples_work(fresh_plugins):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Write a block plugin"):text.index("## Robustness and speed")]
    module_only, with_infer = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    namespace: dict = {}
    exec(module_only, namespace)  # noqa: S102 - the README's own example
    ghost = namespace["GHOST"]
    assert ghost.infer is None
    measured = check_block(ghost, [(16, 8, 8)], out=30, ratio=3)
    # the second example adds a formula to the same class: run it on a subclass of the first
    code = re.sub(r"class Ghost\(nn.Module\):\n\s+\.\.\.[^\n]*\n", "class Ghost(Ghost):\n", with_infer)
    exec(code.replace("infer=infer_with(Ghost), ...)", "infer=infer_with(Ghost), params=GHOST.params)"), namespace)
    assert namespace["GHOST"].infer is not None
    formula = check_block(namespace["GHOST"], [(16, 8, 8)], out=30, ratio=3)
    assert (formula.outputs, formula.params, formula.macs) == (measured.outputs, measured.params, measured.macs)
    fresh_plugins.register_plugin(types_module("readme_blocks", namespace), name="readme_blocks")
    assert Graph.from_dict({"name": "g", "input": [3, 8, 8], "nodes": [
        {"name": "ghost", "block": "ghost_module", "out": 16}]}, "g.yaml").build()(torch.zeros(1, 3, 8, 8)).shape \
        == (1, 16, 8, 8)


def types_module(name: str, namespace: dict):
    import types

    module = types.ModuleType(name)
    module.nascore_blocks = namespace["nascore_blocks"]
    return module
