"""Broken plugins: one that fails to import, raises in a hook, returns garbage, registers a taken block name, or
whose block misbehaves (infer / module factory / canonical raise or return garbage). Each is reported by name, the
others still load, and a graph that uses a broken block gets a NascoreError naming the node -- never a bare
ZeroDivisionError / KeyError / RuntimeError out of plugin code. A strategy plugin whose sampler raises, in a search.
"""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from nascore import Graph
from nascore.errors import DuplicateBlockError, NascoreError, PluginError, ShapeError
from tests.faults import faulty_plugins as fp

SOURCE = "plugged.yaml"


def _doc(block: str, **params) -> dict:
    return {"name": "plugged", "input": [3, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "bad", "block": block, **params},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]}


@pytest.fixture
def broken_blocks(fresh_plugins):
    fresh_plugins.register_plugin(fp.BrokenBehaviourBlocks(), name="broken_blocks")
    return fresh_plugins


# -- loading ----------------------------------------------------------------------------------------------------------


def test_plugins_failing_on_import_are_reported_by_name_and_others_load(monkeypatch, tmp_path, fresh_plugins):
    (tmp_path / "plugin_zero_division.py").write_text("1 / 0\n")
    (tmp_path / "plugin_syntax_error.py").write_text("def broken(:\n")
    (tmp_path / "plugin_bad_spec.py").write_text(
        "from nascore import BlockSpec, hookimpl\n"
        "SPEC = BlockSpec(name='bad_spec', module=None, infer=None, params=(), doc='x')\n"
        "BAD = BlockSpec(name='reserved', module=None, infer=None, doc='x',\n"
        "                params=(__import__('nascore').Param('inputs', int),))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = ["plugin_zero_division", "plugin_syntax_error", "plugin_bad_spec", "no_such_plugin_module",
               "tests.fixtures.raises_on_import"]
    monkeypatch.setenv("NASCORE_PLUGINS", ",".join(modules))
    fresh_plugins.reset()
    from nascore.blocks.registry import BLOCKS

    problems = BLOCKS.problems()
    for module, fragment in zip(modules, ("ZeroDivisionError", "SyntaxError", "reserved parameter names",
                                          "ModuleNotFoundError", "broken on purpose"), strict=True):
        assert any(module in p and fragment in p for p in problems), (module, problems)
    assert "conv_bn_act" in BLOCKS and "mbconv" in BLOCKS
    Graph.from_dict(_doc("identity"), SOURCE)   # the rest works
    listing = CliRunner().invoke(__import__("nascore.cli", fromlist=["main"]).main, ["blocks", "--json"])
    assert listing.exit_code == 0, listing.output
    reported = json.loads(listing.stdout)["problems"]
    assert all(any(m in p for p in reported) for m in modules), reported


@pytest.mark.parametrize("plugin, fragments", [
    (fp.RaisesInHook(), ["nascore_blocks() raised RuntimeError: boom in the blocks hook"]),
    (fp.ReturnsGarbage(), ["returned None", "returned 'conv_bn_act'", "returned 42", "returned {'name'"]),
    (fp.ReturnsMapping(), ["returned dict"]),
    (fp.ReturnsString(), ["returned str"]),
])
def test_hooks_that_raise_or_return_garbage_are_reported_by_name(fresh_plugins, plugin, fragments):
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(plugin, name="faulty")
    problems = BLOCKS.problems()
    for fragment in fragments:
        assert any(p.startswith("plugin 'faulty'") and fragment in p for p in problems), (fragment, problems)
    assert "conv_bn_act" in BLOCKS
    if isinstance(plugin, fp.ReturnsGarbage):   # the good item next to the garbage still loads
        assert BLOCKS.owner("garbage_neighbour") == "faulty"


def test_a_raising_hook_breaks_only_its_own_registry(fresh_plugins):
    from nascore.nas.strategies import STRATEGIES

    fresh_plugins.register_plugin(fp.RaisesInHook(), name="faulty")
    assert any("faulty" in p and "nascore_strategies() raised KeyError" in p for p in STRATEGIES.problems())
    assert "tpe" in STRATEGIES and "random" in STRATEGIES


def test_a_generator_hook_failing_half_way_is_reported_not_raised(fresh_plugins):
    """The registry wraps only the hook call in try/except; a generator's body runs while the registry
    iterates the result, outside it, so the RuntimeError escapes from every block lookup."""
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(fp.GeneratorWorks(), name="generator_ok")
    fresh_plugins.register_plugin(fp.GeneratorRaises(), name="generator_broken")
    try:
        known = "conv_bn_act" in BLOCKS
        problems = BLOCKS.problems()
    except NascoreError:
        raise
    except Exception as exc:   # noqa: BLE001
        pytest.fail(f"a plugin's generator hook escaped the registry: {type(exc).__name__}: {exc}")
    assert known and "from_a_generator" in BLOCKS
    assert any("generator_broken" in p and "generator hook broke half-way" in p for p in problems), problems


def test_duplicate_block_names_name_both_plugins_and_the_node(fresh_plugins):
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(fp.DuplicateOfBuiltin(), name="impostor")
    with pytest.raises(DuplicateBlockError, match="conv_bn_act.*(nascore.basic, impostor|impostor, nascore.basic)"):
        BLOCKS.get("conv_bn_act")
    with pytest.raises(DuplicateBlockError) as info:
        Graph.from_dict(_doc("identity"), SOURCE)
    assert str(info.value).startswith(f"{SOURCE}: node 'stem'") and "NASCORE_PREFER" in str(info.value)
    assert any("conv_bn_act" in p and "impostor" in p for p in BLOCKS.problems())
    assert "mbconv" in BLOCKS   # the rest still works


def test_duplicate_block_name_within_one_plugin_is_an_error(fresh_plugins):
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(fp.DuplicateWithinOnePlugin(), name="careless")
    with pytest.raises(DuplicateBlockError, match="careless"):
        BLOCKS.get("twice_in_one_plugin")
    assert "conv_bn_act" in BLOCKS


def test_registering_the_same_plugin_name_twice_is_a_plugin_error(fresh_plugins):
    fresh_plugins.register_plugin(fp.GeneratorWorks(), name="twice")
    with pytest.raises(PluginError, match="twice"):
        fresh_plugins.register_plugin(fp.GeneratorWorks(), name="twice")


# -- a broken block in a graph -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", sorted(fp.INFER_RAISES))
def test_infer_raising_any_exception_is_a_nascore_error_naming_the_node(broken_blocks, block):
    """Any exception but a NascoreError out of a block's infer (ZeroDivisionError, KeyError, RuntimeError, ...) is
    the plugin's bug: a PluginError naming the node, the block and the plugin, never the user's ShapeError."""
    with pytest.raises(PluginError) as info:
        Graph.from_dict(_doc(block), SOURCE)
    message = str(info.value)
    assert message.startswith(f"{SOURCE}: node 'bad'"), message
    assert f"block {block!r} of plugin 'broken_blocks'" in message and type(fp.INFER_RAISES[block]).__name__ in message
    assert not isinstance(info.value, ShapeError) and "\n" not in message


@pytest.mark.parametrize("block", sorted(fp.INFER_GARBAGE))
def test_infer_returning_garbage_is_a_nascore_error_naming_the_node(broken_blocks, block):
    """An infer that returns None, a dict, no outputs or impossible shapes is the plugin's fault and must be
    reported at its node (not as an AttributeError / StopIteration, nor as a shape error of the next node)."""
    with pytest.raises(PluginError) as info:
        Graph.from_dict(_doc(block), SOURCE)
    assert str(info.value).startswith(f"{SOURCE}: node 'bad'"), str(info.value)
    assert "plugin 'broken_blocks'" in str(info.value)


@pytest.mark.parametrize("block", sorted(fp.MODULE_RAISES) + ["module_returns_none", "module_returns_int"])
def test_module_factory_failures_are_nascore_errors_naming_the_node(broken_blocks, block):
    """compiler.build catches only NascoreError from a block's module factory: a plain exception escapes
    unlocated, and a factory returning a non-Module builds a GraphModule that fails only when called."""
    graph = Graph.from_dict(_doc(block), SOURCE)     # analysis does not touch the module factory
    with pytest.raises(NascoreError) as info:
        graph.build()
    assert str(info.value).startswith(f"{SOURCE}: node 'bad'"), str(info.value)


def test_canonical_hook_raising_is_a_nascore_error_naming_the_node(broken_blocks):
    graph = Graph.from_dict(_doc("canonical_raises"), SOURCE)
    with pytest.raises(NascoreError) as info:
        graph.structural_hash()
    assert "node 'bad'" in str(info.value), str(info.value)


def test_a_working_plugin_block_next_to_broken_ones_builds_and_runs(broken_blocks):
    import torch

    model = Graph.from_dict(_doc("works_fine"), SOURCE).build()
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 10)


def test_broken_block_in_a_search_space_sample_is_a_nascore_error(broken_blocks):
    from nascore.nas.space import SearchSpace

    doc = {"name": "s", "graph": {"input": [3, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": {"choice": [8, 16]}},
        {"name": "bad", "block": {"choice": ["works_fine", "infer_runtime_error"]}},
        {"name": "gap", "block": "global_avg_pool"}, {"name": "fc", "block": "linear", "out": 10}]}}
    space = SearchSpace(doc, "space.yaml")
    with pytest.raises(NascoreError, match=r"space.yaml \(sample\): node 'bad'"):
        space.fixed({"stem/out": 8, "bad/block": "infer_runtime_error"})


# -- strategies --------------------------------------------------------------------------------------------------------


@pytest.fixture
def faulty_strategies(fresh_plugins):
    fresh_plugins.register_plugin(fp.FaultyStrategies(), name="faulty_strategies")
    return fresh_plugins


@pytest.mark.parametrize("name", ["faulty_make", "faulty_make_returns_none"])
def test_strategy_factory_failures_are_strategy_errors(faulty_strategies, name):
    """make_sampler turns NascoreError and ValueError from a strategy's make() into StrategyError; a
    RuntimeError escapes, and a make() returning None is accepted and fails later inside Optuna."""
    from nascore.errors import StrategyError
    from nascore.nas.strategies import StrategyContext, make_sampler

    with pytest.raises(StrategyError, match=f"strategy '{name}'"):
        make_sampler(name, StrategyContext(directions=("maximize",)))


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["faulty_independent", "faulty_relative"])
def test_search_with_a_raising_sampler_fails_cleanly(local_ray, faulty_strategies, tmp_path, strategy):
    """The sampler raises inside study.ask() / trial.suggest_*(): the search must end with a NascoreError naming
    the strategy (or record the trials as failed and finish) -- never a bare RuntimeError -- and must leave no
    trial RUNNING in the study, so that --resume is not confused by it."""
    from nascore.nas.rundir import RunDir
    from nascore.nas.driver import search
    from tests.conftest import SPACES

    error, problems = None, []
    try:
        search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=2, epochs=1, workers=1, strategy=strategy,
               pruner="none", progress=None)
    except NascoreError as err:
        error = err
    except Exception as exc:   # noqa: BLE001
        problems.append(f"the search crashed with {type(exc).__name__}: {exc}")
    run = RunDir.open(next(p for p in tmp_path.iterdir() if p.name.startswith("mbconv-")))
    trials = run.load_study().get_trials(deepcopy=False)
    running = [t.number for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    if running:
        problems.append(f"trials left RUNNING in the study: {running}")
    if error is not None and strategy not in str(error):
        problems.append(f"the error does not name the strategy: {error}")
    if error is None and not problems and not all(
            t.state == optuna.trial.TrialState.FAIL and "sampler exploded" in t.user_attrs.get("reason", "")
            for t in trials):
        problems.append("the search finished without recording the sampler's failure")
    assert not problems, "; ".join(problems)
