"""README examples are real: every YAML block in it loads (as a graph or as a search space)."""

from __future__ import annotations

import re

import pytest
import yaml

from nascore import Graph
from nascore.space import SearchSpace
from tests.conftest import ROOT

BLOCKS = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_has_yaml_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("text", BLOCKS, ids=[f"yaml-{i}" for i in range(len(BLOCKS))])
def test_readme_yaml_loads(text):
    doc = yaml.safe_load(text)
    if "graph" in doc:
        space = SearchSpace(doc, "README.md")
        assert space.describe()
    else:
        Graph.from_dict(doc, "README.md").analyse()
