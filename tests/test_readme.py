"""README examples are real: every YAML block in it loads (as a graph or as a search space)."""

from __future__ import annotations

import re

import pytest
import yaml

from nascore import Graph
from nascore.nas.space import SearchSpace
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


# -- every README command runs ----------------------------------------------------------------------------------------

RUN_PLACEHOLDER = "runs/mbconv-20261123-150000"
NOT_HERE = ("--address", "ray start")   # cluster commands: need a running Ray cluster, documented, not run in CI


def _commands() -> list[str]:
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(".venv/bin/nascore ") and not any(word in line for word in NOT_HERE):
                lines.append(line[len(".venv/bin/nascore "):])
    return lines


@pytest.mark.slow
def test_every_readme_command_runs(local_ray, tmp_path, monkeypatch):
    import shlex

    from click.testing import CliRunner

    from nascore.cli import main
    from nascore.nas.driver import search

    commands = _commands()
    assert any(c.startswith("search") for c in commands) and any(c.startswith("export") for c in commands)
    monkeypatch.chdir(ROOT)
    run = search(ROOT / "search_spaces" / "mbconv.yaml", runs_root=tmp_path / "runs", trials=1, epochs=1,
                 progress=None)
    for command in commands:
        text = (command.replace(RUN_PLACEHOLDER, str(run)).replace(" out/", f" {tmp_path}/out/")
                .replace("=out/", f"={tmp_path}/out/")
                .replace("-o fpn.mmd", f"-o {tmp_path}/fpn.mmd"))
        args = shlex.split(text)
        if args[0] == "search":
            args += ["--runs", str(tmp_path / "runs"), "--trials", "1", "--epochs", "1", "--workers", "1"]
        if args[0] == "train" or args[:2] == ["supernet", "train"]:
            args += ["--epochs", "1"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"nascore {text}\n{result.output}"
    python = [b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
              if "load_model" in b][0]
    exec(python.replace('"out/', f'"{tmp_path}/out/'), {})  # noqa: S102 - README's own example
