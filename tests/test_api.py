"""The Python API README documents works, and keeps working after its first use.

``nascore.train`` once resolved to a function whose module imported ``nascore.train`` (then a submodule): from the
second call on, ``nascore.train`` was that module. No public name may equal a submodule's name, and every README
API is called twice here.
"""

from __future__ import annotations

import pkgutil
import types

import pytest

import nascore
from tests.conftest import ROOT, SPACES

TINY = {
    "name": "tiny",
    "input": [1, 8, 8],
    "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10},
    ],
}


def test_no_public_name_is_also_a_submodule():
    submodules = {info.name for info in pkgutil.iter_modules(nascore.__path__)}
    clashes = set(nascore.__all__) & submodules
    assert not clashes, f"public names that a submodule import would replace: {sorted(clashes)}"


def test_every_public_name_resolves_to_the_same_non_module_object_twice():
    for name in nascore.__all__:
        first, second = getattr(nascore, name), getattr(nascore, name)
        assert first is second and not isinstance(first, types.ModuleType), name


@pytest.mark.slow
def test_every_readme_api_called_twice(local_ray, tmp_path):
    graph = nascore.Graph.from_dict(TINY, "tiny.yaml")
    for attempt in range(2):
        assert nascore.Graph.load(ROOT / "graphs" / "resnet18.yaml").analyse().params == 11_689_512
        assert graph.build()(__import__("torch").zeros(2, 1, 8, 8)).shape == (2, 10)
        space = nascore.SearchSpace.load(SPACES / "mbconv.yaml")
        assert space.describe()

        metrics = nascore.train(graph, tmp_path / f"train{attempt}", epochs=1, progress=None)
        assert 0.0 <= metrics["val_acc"] <= 1.0
        exported = nascore.export(tmp_path / f"train{attempt}", tmp_path / f"export{attempt}", formats="weights")
        model = nascore.load_model(exported)
        assert model(__import__("torch").zeros(1, 1, 8, 8)).shape == (1, 10)
        run = nascore.search(SPACES / "mbconv.yaml", runs_root=tmp_path / "runs", trials=1, epochs=1,
                             workers=1, progress=None)
        assert (run / "summary.json").is_file()


def test_packages_import_only_the_layers_below_them():
    """README's Architecture section: imports go one way, and the core never imports the built-in plugins."""
    import re

    layers = ["errors", "ext", "blocks", "io", "graph", "training", "nas", "exporting", "oneshot", "zerocost"]
    rank = {name: i for i, name in enumerate(layers)}
    rank["oneshot"] = rank["zerocost"] = rank["exporting"]   # siblings: none imports another
    wrong = []
    for package in layers[1:]:
        for path in (ROOT / "nascore" / package).rglob("*.py"):
            text = path.read_text()
            assert "nascore_plugins" not in re.findall(r"^\s*(?:from|import) (\S+)", text, flags=re.M)
            for used in set(re.findall(r"^\s*from nascore\.([a-z_]+)", text, flags=re.M)):
                if used != package and (used not in rank or rank[used] >= rank[package]):
                    wrong.append(f"{path.relative_to(ROOT)} imports nascore.{used}")
    assert not wrong, wrong
