"""The search-space language: every construct maps onto Optuna suggest calls; every malformed one is a clear error."""

from __future__ import annotations

import textwrap

import optuna
import pytest

from nascore.errors import BlockNotFoundError, SearchSpaceError
from nascore.nas.space import SearchSpace
from tests.conftest import SPACES

optuna.logging.set_verbosity(optuna.logging.WARNING)


def space(text: str, tmp_path=None) -> SearchSpace:
    if tmp_path is None:
        import yaml

        return SearchSpace(yaml.safe_load(textwrap.dedent(text)), "space.yaml")
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return SearchSpace.load(path)


BASE = """\
graph:
  input: [1, 8, 8]
  nodes:
{nodes}
    - {{name: gap, block: global_avg_pool}}
    - {{name: fc, block: linear, out: 10}}
"""


def nodes(*lines: str) -> str:
    return BASE.format(nodes="\n".join("    " + line for line in lines))


class Recorder:
    """A trial that records every suggest call (name, kind, domain) and answers with the first option."""

    def __init__(self):
        self.calls = []

    def suggest_categorical(self, name, choices):
        self.calls.append((name, "categorical", tuple(choices)))
        return choices[-1]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.calls.append((name, "int", (low, high, step, log)))
        return high

    def suggest_float(self, name, low, high, step=None, log=False):
        self.calls.append((name, "float", (low, high, step, log)))
        return high


def test_every_construct_is_one_suggest_call_with_a_path_name():
    s = space(nodes(
        "- {name: stem, block: conv_bn_act, out: {int: [8, 32], step: 8}, kernel: {choice: [3, [1, 3]]}}",
        "- {name: s1, block: mbconv, repeat: {int: [1, 3]}, out: 16, expand: {choice: [3, 6]}, "
        "se_ratio: {float: [0.0, 0.5], step: 0.25}}",
        "- name: s2",
        "  block: {choice: {mbconv: {out: 24, kernel: {choice: [3, 5]}}, resnet_basic: {out: 24, se_ratio: "
        "{choice: [0.0, 0.25]}}}}",
        "- {name: cell, block: nb201_cell, genotype: {genotype: nb201}}",
    ) + "scale: {width: {float: [0.5, 2.0], log: true}}\n")
    trial = Recorder()
    graph = s.sample(trial)
    names = [c[0] for c in trial.calls]
    assert names[:6] == ["stem/out", "stem/kernel", "s1/repeat", "s1/expand", "s1/se_ratio", "s2/block"]
    assert "s2/resnet_basic/se_ratio" in names and "s2/mbconv/kernel" not in names   # conditional on the block
    assert sum(n.startswith("cell/genotype/edge_") for n in names) == 6
    assert names[-1] == "scale/width"
    assert dict((c[0], c[1:]) for c in trial.calls)["stem/kernel"] == ("categorical", (3, "[1, 3]"))
    assert graph.block("s2") == "resnet_basic"
    assert len(graph.stages()["s1"]) == 3
    assert graph.params("stem")["kernel"] == [1, 3]          # the list choice comes back as a list


def test_fixed_trial_replays_an_architecture():
    s = SearchSpace.load(SPACES / "mbconv.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    trial = study.ask()
    g = s.sample(trial)
    assert s.fixed(trial.params).structural_hash() == g.structural_hash()


def test_shared_names_give_one_value():
    s = space(nodes(
        "- {name: c1, block: nb201_cell, inputs: input, genotype: {genotype: nb201, name: cell}}",
        "- {name: conv, block: conv_bn_act, out: 1}",
        "- {name: c2, block: nb201_cell, genotype: {genotype: nb201, name: cell}}",
    ))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    g = s.sample(study.ask())
    assert g.params("c1")["genotype"] == g.params("c2")["genotype"]
    assert [name for name, _ in s.describe()] == ["cell"]   # one genotype row, six edges


def test_grid_is_finite_only_for_discrete_spaces():
    grid = SearchSpace.load(SPACES / "efficientnet_compound.yaml").grid()
    assert grid == {"compound/alpha": [1.0, 1.2, 1.4], "compound/beta": [1.0, 1.1, 1.2]}
    continuous = space(nodes("- {name: a, block: conv_bn_act, out: 8}") + "scale: {width: {float: [0.5, 1.0]}}\n")
    assert continuous.grid() is None


def test_compound_scaling_respects_the_constraint():
    s = SearchSpace.load(SPACES / "efficientnet_compound.yaml")
    doc, scaling = s.sample_document(optuna.trial.FixedTrial({"compound/alpha": 1.2, "compound/beta": 1.1}))
    assert scaling["depth"] * scaling["width"] ** 2 * scaling["resolution"] ** 2 == pytest.approx(2.0)
    graph = s.fixed({"compound/alpha": 1.2, "compound/beta": 1.1})
    assert graph.input_shape[1] == round(16 * scaling["resolution"])


@pytest.mark.parametrize("name", ["mbconv", "macro", "nb201", "darts", "efficientnet_compound"])
def test_shipped_spaces_sample_valid_graphs(name):
    s = SearchSpace.load(SPACES / f"{name}.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(15):
        trial = study.ask()
        graph = s.sample(trial)
        assert list(graph.analyse().outputs.values()) == [(10,)]
        study.tell(trial, 0.0)


def test_nb201_isomorphic_cells_hash_the_same():
    s = SearchSpace.load(SPACES / "nb201.yaml")
    edges = [f"cell/edge_{i}_{j}" for j in range(1, 4) for i in range(j)]
    # node 1's conv feeds nothing that reaches the output when every edge out of node 1 is 'none'
    a = dict.fromkeys(edges, "none") | {"cell/edge_0_3": "nor_conv_3x3", "cell/edge_0_1": "nor_conv_1x1"}
    b = dict.fromkeys(edges, "none") | {"cell/edge_0_3": "nor_conv_3x3", "cell/edge_0_1": "avg_pool_3x3"}
    c = dict.fromkeys(edges, "none") | {"cell/edge_0_3": "nor_conv_1x1"}
    assert s.fixed(a).structural_hash() == s.fixed(b).structural_hash()
    assert s.fixed(a).structural_hash() != s.fixed(c).structural_hash()


@pytest.mark.parametrize("entry, error, fragment", [
    ("- {name: a, block: conv_bn_act, out: {choice: []}}", SearchSpaceError, "non-empty list"),
    ("- {name: a, block: conv_bn_act, out: {int: [32, 8]}}", SearchSpaceError, "low > high"),
    ("- {name: a, block: conv_bn_act, out: {int: [8, 32], step: 0}}", SearchSpaceError, "positive int"),
    ("- {name: a, block: conv_bn_act, out: {int: [8.5, 32]}}", SearchSpaceError, "[low, high] of finite ints"),
    ("- {name: a, block: conv_bn_act, out: {float: [0, 1], log: true}}", SearchSpaceError, "low > 0"),
    ("- {name: a, block: conv_bn_act, out: {float: [0, 1], step: 0.3}}", SearchSpaceError, "does not divide"),
    ("- {name: a, block: conv_bn_act, out: {choice: [8, 16], int: [1, 2]}}", SearchSpaceError, "one of choice"),
    ("- {name: a, block: conv_bn_act, out: {choise: [8, 16]}}", SearchSpaceError, "one of choice"),
    ("- {name: a, block: conv_bn_act, out: {int: [8, 16], stp: 8}}", SearchSpaceError, "unknown option 'stp'"),
    ("- {name: a, block: conv_bn_act, out: 8, kernal: {choice: [3, 5]}}", SearchSpaceError, "did you mean 'kernel'"),
    ("- {name: a, block: conv_bn_at, out: 8}", BlockNotFoundError, "did you mean 'conv_bn_act'"),
    ("- {name: a, block: {choice: {mbconv: {out: 8}, fire: {out: 8}}}}", SearchSpaceError, "block 'fire' has no "
     "parameter 'out'"),
    ("- {name: a, block: {choice: 3}}", SearchSpaceError, "a block choice lists block names"),
    ("- {name: a, block: nb201_cell, genotype: {genotype: nb301}}", SearchSpaceError,
     "unknown genotype kind 'nb301' (did you mean 'nb201'?)"),
    ("- {name: a, block: nb201_cell, genotype: {genotype: nb201, ops: [conv_9x9]}}", SearchSpaceError,
     "unknown nb201 op"),
    ("- {name: a, block: darts_cell, genotype: {genotype: darts, ops: [conv_9x9]}}", SearchSpaceError,
     "the cell accepts none, max_pool_3x3"),
    ("- {name: a, block: conv_bn_act, repeat: {float: [1, 2]}, out: 8}", SearchSpaceError, "repeat must be"),
    ("- {name: a, block: conv_bn_act, out: {choice: [8, 8]}}", SearchSpaceError, "twice"),
    ("- {name: a, block: conv_bn_act, out: [{choice: [8]}]}", SearchSpaceError, "nested inside a list"),
])
def test_malformed_spaces_name_file_node_and_problem(tmp_path, entry, error, fragment):
    with pytest.raises(error) as info:
        space(nodes(entry), tmp_path)
    message = str(info.value)
    assert str(tmp_path / "space.yaml") in message and fragment in message, message
    assert "node 'a'" in message or "nodes[" in message, message


@pytest.mark.parametrize("text, fragment", [
    ("grap: {}\n", "unknown top-level key 'grap' (did you mean 'graph'?)"),
    ("graph: 3\n", "'graph' must be a graph document"),
    ("graph: {nodes: []}\n", "non-empty list"),
    (nodes("- {name: a, block: conv_bn_act, out: 8}") + "scale: {wdth: 1.0}\n", "'scale' takes"),
    (nodes("- {name: a, block: conv_bn_act, out: 8}") + "compound: {phi: -1}\n", "compound/phi"),
    ("graph: {file: missing.yaml}\n", "file not found"),
    ("graph: [", "invalid YAML"),
])
def test_malformed_documents(tmp_path, text, fragment):
    with pytest.raises(SearchSpaceError) as info:
        space(text, tmp_path)
    assert fragment in str(info.value)


def test_sampling_is_fast_and_needs_no_weights():
    """A smoke check of the design (no timing assertion): 50 samples of the macro space analyse on the spot."""
    s = SearchSpace.load(SPACES / "macro.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = [s.sample(study.ask()).analyse().params for _ in range(50)]
    assert len(set(params)) > 10
