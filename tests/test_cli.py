"""The command line: listings, graph info and render, and one clear line with exit code 2 on every user error."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from nascore.cli import main
from tests.conftest import GRAPHS


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, list(args), catch_exceptions=False)
    return invoke


def test_blocks_json_lists_every_block_with_plugin_and_params(run):
    result = run("blocks", "--json")
    assert result.exit_code == 0
    blocks = {b["name"]: b for b in json.loads(result.output)["blocks"]}
    assert blocks["conv_bn_act"]["plugin"] == "nascore.basic"
    assert {p["name"] for p in blocks["conv_bn_act"]["params"]} >= {"out", "kernel", "stride", "norm", "act"}
    required = {"conv_bn_act", "depthwise_separable", "dilated_conv", "resnet_basic", "resnet_bottleneck", "se",
                "mbconv", "fused_mbconv", "inverted_residual", "shufflenet_v1", "shufflenet_v2", "fire", "dense_block",
                "dense_transition", "inception_v1", "inception_v3_a", "inception_resnet_a", "res2net", "max_pool",
                "global_avg_pool", "flatten", "dropout", "linear", "add", "concat", "multiply", "channel_shuffle",
                "upsample", "fpn", "pan", "aspp", "psp", "darts_cell", "nb201_cell"}
    assert required <= set(blocks), required - set(blocks)


def test_blocks_listing_is_readable(run):
    result = run("blocks")
    assert result.exit_code == 0
    assert "conv_bn_act (aliases: conv)  [nascore.basic]" in result.output


def test_graph_info_json(run):
    result = run("graph", "info", str(GRAPHS / "resnet18.yaml"), "--json")
    assert result.exit_code == 0
    info = json.loads(result.output)
    assert {"params", "macs", "outputs", "nodes"} <= set(info)
    assert info["params"] == 11_689_512 and info["outputs"] == {"fc": [1000]}
    assert info["nodes"][0]["name"] == "stem"


def test_graph_info_table_and_input_override(run):
    result = run("graph", "info", str(GRAPHS / "resnet18.yaml"), "--input", "3x128x128")
    assert result.exit_code == 0
    assert "params: 11,689,512" in result.output
    assert "layer4.1" in result.output and "512x4x4" in result.output


@pytest.mark.parametrize("args, fragment", [
    (("graph", "info", "missing.yaml"), "missing.yaml: file not found"),
    (("graph", "info", str(GRAPHS / "resnet18.yaml"), "--input", "3x0x4"), "expected CxHxW"),
    (("graph", "render", str(GRAPHS / "resnet18.yaml"), "-o", "out.txt"), "unknown format '.txt'"),
])
def test_errors_are_one_line_and_exit_2(fragment, args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_render_dot_and_mermaid(run, tmp_path):
    for suffix, marker in ((".dot", "digraph"), (".mmd", "flowchart TD")):
        out = tmp_path / f"g{suffix}"
        result = run("graph", "render", str(GRAPHS / "resnet18_fpn_pan.yaml"), "-o", str(out))
        assert result.exit_code == 0, result.output
        text = out.read_text()
        assert text.startswith(marker) and "fpn" in text


def test_render_svg_needs_graphviz(tmp_path):
    result = CliRunner().invoke(main, ["graph", "render", str(GRAPHS / "resnet18.yaml"), "-o", str(tmp_path / "g.svg")])
    if shutil.which("dot"):
        assert result.exit_code == 0 and (tmp_path / "g.svg").read_text().lstrip().startswith("<")
    else:
        assert result.exit_code == 2 and "Graphviz" in result.output


@pytest.mark.parametrize("command", [(), ("blocks",), ("graph",), ("graph", "info"), ("graph", "render")])
def test_help_everywhere(run, command):
    result = run(*command, "--help")
    target = main
    for name in command:
        target = target.commands[name]
    own_words = (target.help or "").strip().splitlines()[0]   # nascore's own text, not click's framing
    assert result.exit_code == 0 and own_words and own_words in " ".join(result.output.split())
