"""Plugins: built-ins load through entry points; broken plugins are reported by name and the rest still load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nascore.errors import BlockNotFoundError, DuplicateBlockError
from tests.conftest import ROOT
from tests.fixtures import broken_plugins


def test_builtin_plugins_are_listed_in_code_and_registered_like_any_other(fresh_plugins):
    """pytest's default_plugins: every module of plugins/ with a hook is in BUILTIN_PLUGINS (so a new file there is
    never silently missing until a reinstall), and each is registered under its name."""
    import importlib
    import pkgutil

    import nascore_plugins
    from nascore.blocks.registry import BLOCKS
    from nascore.ext.manager import BUILTIN_PLUGINS

    with_hooks = set()
    for info in pkgutil.iter_modules(nascore_plugins.__path__):
        module = importlib.import_module(f"nascore_plugins.{info.name}")
        if any(name.startswith("nascore_") and callable(getattr(module, name)) for name in vars(module)):
            with_hooks.add(module.__name__)
    assert with_hooks == set(BUILTIN_PLUGINS.values())
    pm = fresh_plugins.plugin_manager()
    assert all(pm.has_plugin(name) for name in BUILTIN_PLUGINS)
    assert BLOCKS.owner("conv_bn_act") == "nascore.basic"


def test_hookspecs_all_known(fresh_plugins):
    fresh_plugins.plugin_manager().check_pending()


def test_unknown_block_suggests_close_names():
    from nascore.blocks.registry import get_block

    with pytest.raises(BlockNotFoundError, match="did you mean 'conv_bn_act'"):
        get_block("conv_bn_ac")


@pytest.mark.parametrize("plugin, fragment", [
    (broken_plugins.RaisesInHook(), "raised RuntimeError: boom in hook"),
    (broken_plugins.ReturnsGarbage(), "expected a BlockSpec"),
    (broken_plugins.ReturnsNotAList(), "returned int"),
])
def test_faulty_plugin_is_reported_and_others_load(fresh_plugins, plugin, fragment):
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(plugin, name="faulty")
    problems = BLOCKS.problems()
    assert any("faulty" in p and fragment in p for p in problems), problems
    assert "conv_bn_act" in BLOCKS


def test_plugin_failing_on_import_is_reported(monkeypatch, fresh_plugins):
    from nascore.blocks.registry import BLOCKS

    monkeypatch.setenv("NASCORE_PLUGINS", "tests.fixtures.raises_on_import")
    fresh_plugins.reset()
    problems = BLOCKS.problems()
    assert any("tests.fixtures.raises_on_import" in p and "broken on purpose" in p for p in problems), problems
    assert "conv_bn_act" in BLOCKS


def test_duplicate_block_names_both_plugins_until_user_chooses(fresh_plugins):
    from nascore.blocks.registry import BLOCKS

    fresh_plugins.register_plugin(broken_plugins.Duplicate(), name="impostor")
    with pytest.raises(DuplicateBlockError, match=r"nascore.basic.*impostor|impostor.*nascore.basic"):
        BLOCKS.get("identity")
    assert "conv_bn_act" in BLOCKS  # the rest still works
    BLOCKS.set_preference({"identity": "impostor"})
    try:
        assert BLOCKS.get("identity").doc == "impostor"
        assert BLOCKS.owner("identity") == "impostor"
    finally:
        BLOCKS.set_preference({})


def test_blocking_a_plugin(monkeypatch, fresh_plugins):
    from nascore.blocks.registry import BLOCKS

    monkeypatch.setenv("NASCORE_DISABLE_PLUGINS", "nascore.necks")
    fresh_plugins.reset()
    assert "fpn" not in BLOCKS
    assert "conv_bn_act" in BLOCKS


def test_every_block_declares_doc_and_paper():
    from nascore.blocks.registry import BLOCKS

    for name, spec in BLOCKS.items():
        assert spec.summary, f"{name} has no docstring"
        if name not in {"flatten", "linear", "identity"}:
            assert spec.paper, f"{name} names no paper"


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """pip-install the example third-party package into a private target directory."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT / "examples" / "nascore-ghost-block")],
                   check=True, capture_output=True)
    return target


def _run_with(target: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "nascore.cli", *args], env=env, capture_output=True, text=True,
                          cwd=ROOT)


def test_installed_third_party_plugin_block_is_listed_and_usable(installed_example, tmp_path):
    listing = _run_with(installed_example, "blocks", "--json")
    assert listing.returncode == 0, listing.stderr
    blocks = {b["name"]: b for b in json.loads(listing.stdout)["blocks"]}
    assert blocks["ghost_module"]["plugin"] == "ghost"
    graph = tmp_path / "ghostnet_tiny.yaml"
    graph.write_text("name: ghost_tiny\ninput: [3, 32, 32]\nnodes:\n"
                     "  - {name: stem, block: conv_bn_act, out: 16, stride: 2}\n"
                     "  - {name: ghost, block: ghost_module, out: 32}\n"
                     "  - {name: gap, block: global_avg_pool}\n"
                     "  - {name: fc, block: linear, out: 10}\n")
    info = _run_with(installed_example, "graph", "info", str(graph), "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["outputs"] == {"fc": [10]}
    assert [n["block"] for n in summary["nodes"]][1] == "ghost_module"
    # without the package the same graph is a clear error naming the node and the block
    missing = subprocess.run([sys.executable, "-m", "nascore.cli", "graph", "info", str(graph)],
                             capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2
    assert "node 'ghost'" in missing.stderr and "unknown block 'ghost_module'" in missing.stderr


def test_example_block_formula_matches_module():
    sys.path.insert(0, str(ROOT / "examples" / "nascore-ghost-block"))
    try:
        import nascore_ghost
        from nascore.blocks.testing import check_block

        assert check_block(nascore_ghost.GHOST, [(16, 8, 8)], out=32).outputs["out"] == (32, 8, 8)
        assert check_block(nascore_ghost.GHOST, [(16, 8, 8)], out=30, ratio=3).outputs["out"] == (30, 8, 8)
    finally:
        sys.path.remove(str(ROOT / "examples" / "nascore-ghost-block"))
