"""Graphs: YAML round trip, validation errors that name file and node, hashing, mutation, scaling."""

from __future__ import annotations

import textwrap

import pytest

from nascore import Graph, NascoreError
from nascore.errors import BlockNotFoundError, DocumentError, GraphError, ParamError, ShapeError

TINY = """\
name: tiny
input: [3, 32, 32]
nodes:
- {name: stem, block: conv_bn_act, out: 16, stride: 2}
- {name: stage, block: depthwise_separable, repeat: 3, out: 32, stride: 2}
- {name: gap, block: global_avg_pool}
- {name: fc, block: linear, out: 10}
"""


def write(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_repeat_expands_and_only_first_carries_stride(tmp_path):
    g = Graph.load(write(tmp_path, TINY))
    assert g.nodes == ["stem", "stage.0", "stage.1", "stage.2", "gap", "fc"]
    assert g.params("stage.0")["stride"] == 2 and g.params("stage.2")["stride"] == 1
    a = g.analyse()
    assert a.nodes["stage.2"].outputs["out"] == (32, 8, 8)
    assert a.outputs == {"fc": (10,)}


def test_round_trip_is_exact(tmp_path):
    path = write(tmp_path, TINY)
    g = Graph.load(path)
    assert g.to_yaml() == TINY
    out = tmp_path / "again.yaml"
    g.save(out)
    assert out.read_text() == TINY
    assert Graph.load(out).structural_hash() == g.structural_hash()


def test_multi_output_references_and_explicit_outputs(tmp_path):
    text = """\
    name: split
    input: [3, 16, 16]
    nodes:
    - {name: a, block: conv_bn_act, out: 8}
    - {name: b, block: conv_bn_act, out: 8, stride: 2}
    - {name: up, block: upsample, inputs: [b, a]}
    - {name: join, block: concat, inputs: [a, up]}
    - {name: head, block: conv_bn_act, inputs: join, out: 4}
    outputs: [head, b]
    """
    g = Graph.load(write(tmp_path, text))
    assert g.analyse().outputs == {"head": (4, 16, 16), "b": (8, 8, 8)}
    assert Graph.from_dict(g.to_dict()).to_yaml() == g.to_yaml()


@pytest.mark.parametrize("body, error, fragments", [
    ("- {name: a, block: conv_bn_ac, out: 8}", BlockNotFoundError, ["node 'a'", "did you mean 'conv_bn_act'"]),
    ("- {name: a, block: conv_bn_act, out: 8, kernal: 3}", ParamError, ["node 'a'", "'kernal'", "did you mean 'kernel'"]),
    ("- {name: a, block: conv_bn_act}", ParamError, ["node 'a'", "parameter 'out'", "missing"]),
    ("- {name: a, block: conv_bn_act, out: eight}", ParamError, ["node 'a'", "parameter 'out'", "expected int"]),
    ("- {name: a, block: conv_bn_act, out: 8, act: relu7}", ParamError, ["parameter 'act'", "relu6"]),
    ("- {name: a, block: conv_bn_act, out: 0}", ParamError, ["parameter 'out'", "got 0"]),
    ("- {name: a, block: conv_bn_act, out: 8}\n- {name: b, block: add, inputs: [a]}", GraphError,
     ["node 'b'", "at least 2 inputs, got 1"]),
    ("- {name: a, block: conv_bn_act, out: 8}\n- {name: b, block: conv_bn_act, out: 4, inputs: input}\n"
     "- {name: c, block: add, inputs: [a, b]}", ShapeError, ["node 'c'", "8x32x32", "4x32x32"]),
    ("- {name: a, block: conv_bn_act, out: 8}\n- {name: b, block: conv_bn_act, out: 8, inputs: x}", GraphError,
     ["node 'b'", "unknown node 'x'"]),
    ("- {name: a, block: conv_bn_act, out: 8}\n- {name: b, block: conv_bn_act, out: 8, inputs: input}\n"
     "- {name: c, block: conv_bn_act, out: 8, inputs: a}", GraphError, ["node 'b'", "dangling"]),
    ("- {name: a, block: conv_bn_act, out: 8}\n- {name: a, block: conv_bn_act, out: 8}", GraphError,
     ["node 'a'", "twice"]),
    ("- {name: a, block: linear, out: 8}", ShapeError, ["node 'a'", "flatten"]),
    ("- {block: conv_bn_act, out: 8}", DocumentError, ["nodes[0]", "missing 'name'"]),
    ("- {name: a, block: conv_bn_act, repeat: 0, out: 8}", DocumentError, ["node 'a'", "'repeat'"]),
    ("- {name: 3a, block: conv_bn_act, out: 8}", GraphError, ["invalid node name '3a'"]),
])
def test_errors_name_file_node_and_expectation(tmp_path, body, error, fragments):
    path = write(tmp_path, "name: bad\ninput: [3, 32, 32]\nnodes:\n" + body + "\n")
    with pytest.raises(error) as info:
        Graph.load(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


def test_cycle_is_printed():
    g = Graph("cyc", (3, 8, 8))
    g.add("a", "conv_bn_act", out=4)
    g.add("b", "conv_bn_act", out=4)
    g.add("c", "add", ["a", "b"])
    g.set_inputs("a", ["input"])
    g.set_inputs("b", ["c"])
    with pytest.raises(GraphError, match=r"cycle: (b -> c -> b|c -> b -> c)"):
        g.analyse()


@pytest.mark.parametrize("text, fragment", [
    ("name: x\nnodes: [", "invalid YAML"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("name: x\nnodez: []\n", "unknown top-level key 'nodez' (did you mean 'nodes'?)"),
    ("name: x\ninput: [3, -1, 4]\nnodes: [{name: a, block: identity}]\n", "'input'"),
    ("name: x\nnodes: []\n", "non-empty list"),
])
def test_malformed_documents(tmp_path, text, fragment):
    path = write(tmp_path, text)
    with pytest.raises(DocumentError, match=None) as info:
        Graph.load(path)
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_non_utf8_and_missing_files(tmp_path):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(DocumentError, match="not UTF-8"):
        Graph.load(bad)
    with pytest.raises(DocumentError, match="file not found"):
        Graph.load(tmp_path / "none.yaml")


def _branchy(order):
    g = Graph("h", (3, 16, 16))
    specs = {"p": ("conv_bn_act", ["input"], dict(out=8)), "q": ("conv_bn_act", ["input"], dict(out=8, kernel=5)),
             "m": ("add", ["p", "q"], {}), "o": ("global_avg_pool", ["m"], {})}
    names = dict(zip("pqmo", order))
    for key in "pqmo":
        block, inputs, params = specs[key]
        g.add(names[key], block, [names.get(i, i) for i in inputs], **params)
    g.set_outputs([names["o"]])
    return g


def test_hash_ignores_names_and_insertion_order_but_not_structure():
    a = _branchy(["p", "q", "m", "o"])
    b = _branchy(["x1", "x2", "x3", "x4"])
    assert a.structural_hash() == b.structural_hash()
    c = a.copy()
    c.set_param("q", "kernel", 3)
    assert c.structural_hash() != a.structural_hash()
    d = a.copy()
    d.set_param("p", "out", 8)  # the default made explicit: same network
    assert d.structural_hash() == a.structural_hash()


def test_mutations(tmp_path):
    g = Graph.load(write(tmp_path, TINY))
    m = g.copy()
    m.insert_after("stem", "se", "se")
    assert m.inputs("stage.0")[0].node == "se" and m.nodes[1] == "se"
    m.swap_block("stage.1", "conv_bn_act", out=32)
    m.set_param("fc", "out", 5)
    assert m.analyse().outputs == {"fc": (5,)}
    m.remove("se")
    assert m.inputs("stage.0")[0].node == "stem"
    assert g.analyse().outputs == {"fc": (10,)}  # the original is untouched
    with pytest.raises(GraphError, match="no node 'nope'"):
        m.set_param("nope", "out", 3)


def test_scale_rounds_like_efficientnet(tmp_path):
    g = Graph.load(write(tmp_path, TINY))
    s = g.scale(width=1.1, depth=1.4, resolution=40)
    assert s.input_shape == (3, 40, 40)
    assert s.params("stem")["out"] == 16          # make_divisible(17.6) = 16 (>= 90%)
    assert s.params("stage.0")["out"] == 32       # 35.2 -> 32 (>= 90%)
    assert len(s.stages()["stage"]) == 5          # ceil(3 * 1.4)
    assert s.params("fc")["out"] == 10            # class count is not a channel width
    assert s.to_dict()["nodes"][1]["repeat"] == 5
    wide = g.scale(width=1.4)
    assert wide.params("stem")["out"] == 24       # 22.4 -> 24
    with pytest.raises(ParamError, match="scale width"):
        g.scale(width=-1)


def test_errors_are_nascore_errors(tmp_path):
    assert issubclass(ShapeError, NascoreError) and issubclass(DocumentError, NascoreError)


def test_graph_modules_import_in_any_order_and_core_closes_the_circle_once():
    """core.py holds the data; the stage modules import it, and it imports them once, at its end. Whichever module
    is imported first, Graph's conveniences work; no method body imports lazily."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import nascore.graph.core as core

    tree = ast.parse(Path(core.__file__).read_text())
    late = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and n.col_offset > 0]
    assert not late, f"imports inside functions of nascore/graph/core.py at lines {late}"
    script = textwrap.dedent("""
        import importlib, sys
        for first in ["core", "analysis", "compile", "document", "hashing", "scaling", "render"]:
            for name in [m for m in sys.modules if m.startswith("nascore.graph")]:
                del sys.modules[name]
            importlib.import_module(f"nascore.graph.{first}")
            from nascore.graph.core import Graph
            graph = Graph.from_dict({"input": [3, 8, 8], "nodes": [{"name": "gap", "block": "global_avg_pool"},
                                                                      {"name": "fc", "block": "linear", "out": 2}]})
            assert graph.scale(width=2.0).build() is not None and len(graph.structural_hash()) == 32, first
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
