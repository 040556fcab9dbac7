"""Genotype kinds are plugins: the cells bring their own, the space samples them exactly as it always did, and a
third-party cell's kind works from a space document like the built-in ones."""

from __future__ import annotations

import optuna
import pytest
import torch
import torch.nn as nn

from nascore import BlockSpec, Param, hookimpl
from nascore.blocks.registry import get_block
from nascore.blocks.spec import REQUIRED
from nascore.blocks.tally import Tally
from nascore.errors import GenotypeError, ParamError, PluginError, SearchSpaceError
from nascore.ext.manager import register_plugin, unregister_plugin
from nascore.nas.genotypes import GENOTYPES, Decision, GenotypeSpec, get_genotype
from nascore.nas.space import Genotype, SearchSpace
from nascore_plugins import cells

optuna.logging.set_verbosity(optuna.logging.WARNING)

NB201_CHOICES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
DARTS_CHOICES = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5", "max_pool_3x3", "avg_pool_3x3",
                 "skip_connect")


def cell_space(genotype: dict, block: str = "nb201_cell", **cell) -> dict:
    return {"graph": {"input": [1, 8, 8], "nodes": [
        {"name": "stem", "block": "conv_bn_act", "out": 8},
        {"name": "c", "block": block, **cell, "genotype": genotype},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10}]}}


def darts_space(genotype: dict) -> dict:
    return cell_space(genotype, "darts_cell", inputs=["stem", "stem"], out=8)


class Recorder:
    """A trial recording every categorical (name, choices), answering with the first choice."""

    def __init__(self):
        self.calls = []

    def suggest_categorical(self, name, choices):
        self.calls.append((name, tuple(choices)))
        return choices[0]


# -- the built-in kinds sample exactly what the space sampled before they became plugins -----------------------------

# Recorded from the space before genotype kinds moved to the plugins: parameter names are part of every stored study
# (resumable run directories), so these must never change.
NB201_CALLS = [(f"c/genotype/edge_{i}_{j}", NB201_CHOICES)
               for i, j in ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))]
DARTS_2_CALLS = [("c/genotype/node0/input0", (0, 1)), ("c/genotype/node0/op0", DARTS_CHOICES),
                 ("c/genotype/node0/input1", (0, 1)), ("c/genotype/node0/op1", DARTS_CHOICES),
                 ("c/genotype/node1/input0", (0, 1, 2)), ("c/genotype/node1/op0", DARTS_CHOICES),
                 ("c/genotype/node1/input1", (0, 1, 2)), ("c/genotype/node1/op1", DARTS_CHOICES)]


def test_nb201_parameter_names_choices_and_string_are_unchanged():
    s = SearchSpace(cell_space({"genotype": "nb201"}))
    trial = Recorder()
    s.sample_document(trial)
    assert trial.calls == NB201_CALLS
    values = ["nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect"]
    doc, _ = s.sample_document(optuna.trial.FixedTrial(dict(zip([n for n, _ in NB201_CALLS], values))))
    assert doc["nodes"][1]["genotype"] == \
        "|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    assert s.describe() == [("c/genotype", "nb201 genotype over " + ", ".join(NB201_CHOICES))]


def test_darts_parameter_names_choices_and_string_are_unchanged():
    s = SearchSpace(darts_space({"genotype": "darts", "nodes": 2}))
    trial = Recorder()
    s.sample_document(trial)
    assert trial.calls == DARTS_2_CALLS
    values = [1, "sep_conv_5x5", 0, "skip_connect", 2, "dil_conv_3x3", 1, "max_pool_3x3"]
    doc, _ = s.sample_document(optuna.trial.FixedTrial(dict(zip([n for n, _ in DARTS_2_CALLS], values))))
    assert doc["nodes"][1]["genotype"] == "sep_conv_5x5:1,skip_connect:0|dil_conv_3x3:2,max_pool_3x3:1"
    four = Recorder()
    SearchSpace(darts_space({"genotype": "darts"})).sample_document(four)
    assert len(four.calls) == 16 and four.calls[:8] == DARTS_2_CALLS and four.calls[-1][0] == "c/genotype/node3/op1"
    assert four.calls[-2] == ("c/genotype/node3/input1", (0, 1, 2, 3, 4))


def test_grid_lists_every_decision_under_its_path():
    grid = SearchSpace(darts_space({"genotype": "darts", "nodes": 2, "name": "normal"})).grid()
    assert list(grid) == [n.replace("c/genotype", "normal") for n, _ in DARTS_2_CALLS]
    assert grid["normal/node1/input0"] == [0, 1, 2]


# -- one source of truth: the cells' own tables ------------------------------------------------------------------------


def test_kinds_come_from_the_cell_plugin():
    assert {"nb201", "darts"} <= set(GENOTYPES.names())
    assert GENOTYPES.owner("nb201") == GENOTYPES.owner("darts") == "nascore.cells"
    nb201, darts = get_genotype("nb201"), get_genotype("darts")
    assert nb201.ops == nb201.default_ops == cells.NB201_OPS
    assert darts.ops == cells.DARTS_OPS and darts.default_ops == DARTS_CHOICES   # searches keep their 7 defaults
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"
    assert nb201.canonical(cell) == get_block("nb201_cell").canonical({"genotype": cell})["genotype"] == \
        "|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"
    cell = "sep_conv_3x3:1,skip_connect:0|dil_conv_3x3:2,max_pool_3x3:0"
    assert darts.canonical(cell) == get_block("darts_cell").canonical({"genotype": cell})["genotype"] == \
        "skip_connect:0,sep_conv_3x3:1|max_pool_3x3:0,dil_conv_3x3:2"


@pytest.mark.parametrize("kind, block", [("nb201", "nb201_cell"), ("darts", "darts_cell")])
def test_every_op_the_kind_offers_is_accepted_by_its_cell(kind, block):
    """The drift that made this a plugin: the space's DARTS list had 7 ops, the block's 10."""
    spec = get_genotype(kind)
    for op in spec.ops:
        genotype = spec.sample(lambda name, choices: op if op in choices else choices[-1], "g", [op])
        assert spec.format(spec.parse(genotype)) == genotype
        params = {"genotype": genotype} | ({"out": 8} if kind == "darts" else {})
        shapes = [(8, 8, 8)] * (2 if kind == "darts" else 1)
        get_block(block).infer(shapes, **get_block(block).resolve(params))   # raises if the cell refuses it


def test_darts_ops_the_block_accepts_are_accepted_by_the_space():
    s = SearchSpace(darts_space({"genotype": "darts", "nodes": 2, "ops": ["conv_7x1_1x7"]}))
    graph = s.sample(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask())
    assert graph.params("c")["genotype"].count("conv_7x1_1x7") == 4
    assert graph.build()(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    SearchSpace(darts_space({"genotype": "darts", "ops": ["none", "sep_conv_7x7", "skip_connect"]}))


# -- errors at load time -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("genotype, fragments", [
    ({"genotype": "nb301"}, ["unknown genotype kind 'nb301'", "did you mean 'nb201'", "darts, nb201"]),
    ({"genotype": ["nb201"]}, ["genotype kind must be a name"]),
    ({"genotype": "darts", "ops": ["conv_7x7"]}, ["unknown darts op 'conv_7x7'", "conv_7x1_1x7",
                                                  "none, max_pool_3x3, avg_pool_3x3"]),
    ({"genotype": "nb201", "ops": ["nor_conv_3x3", "nor_conv_3x3"]}, ["'nor_conv_3x3' twice"]),
    ({"genotype": "nb201", "ops": "nor_conv_3x3"}, ["must be a list of op names"]),
    ({"genotype": "nb201", "ops": None}, ["must be a list of op names"]),
    ({"genotype": "nb201", "ops": []}, ["non-empty list"]),
    ({"genotype": "nb201", "nodes": 4}, ["unknown option 'nodes' for genotype nb201", "it takes name, ops"]),
    ({"genotype": "darts", "nodes": 9}, ["genotype darts option 'nodes'", "[1, 8]"]),
    ({"genotype": "darts", "nodes": "4"}, ["option 'nodes'", "expected int"]),
    ({"genotype": "darts", "node": 4}, ["unknown option 'node'", "did you mean 'nodes'"]),
])
def test_bad_genotype_expressions_name_file_node_and_problem(tmp_path, genotype, fragments):
    import yaml

    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(cell_space(genotype)))
    with pytest.raises(SearchSpaceError) as info:
        SearchSpace.load(path)
    message = str(info.value)
    assert isinstance(info.value, GenotypeError)
    assert str(path) in message and "node 'c'" in message and "parameter 'genotype'" in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_a_shared_name_must_keep_one_kind_domain():
    doc = darts_space({"genotype": "darts", "name": "normal"})
    doc["graph"]["nodes"].insert(2, {"name": "c2", "block": "darts_cell", "inputs": ["stem", "c"], "out": 8,
                                     "genotype": {"genotype": "darts", "name": "normal", "nodes": 3}})
    with pytest.raises(SearchSpaceError, match="shared name 'normal'"):
        SearchSpace(doc)


# -- a third-party cell brings its own kind ------------------------------------------------------------------------

CHAIN_OPS = ("identity", "relu", "tanh", "sigmoid")


def parse_chain(genotype: str) -> tuple[str, ...]:
    ops = tuple(genotype.split(">"))
    bad = [op for op in ops if op not in CHAIN_OPS]
    if bad:
        raise ParamError(f"unknown op {bad[0]!r}", where="parameter 'genotype'")
    return ops


def format_chain(ops) -> str:
    return ">".join(ops)


def _chain_module(in_channels, genotype):
    layers = {"identity": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    return nn.Sequential(*(layers[op]() for op in parse_chain(genotype)))


def _chain_infer(in_shapes, genotype):
    parse_chain(genotype)
    return Tally().result(out=in_shapes[0])


class ChainCellPlugin:
    """A third-party cell: a chain of activations, wired by a string, with its own genotype kind."""

    @staticmethod
    @hookimpl
    def nascore_blocks():
        return [BlockSpec(name="chain_cell", module=_chain_module, infer=_chain_infer,
                          params=(Param("genotype", str, REQUIRED, "ops joined by '>'"),), doc="A chain.")]

    @staticmethod
    @hookimpl
    def nascore_genotypes():
        return [GenotypeSpec(
            name="chain", ops=CHAIN_OPS, default_ops=("relu", "tanh"),
            decisions=lambda ops, length: [Decision(f"step{k}", ops) for k in range(length)],
            compose=lambda values, length: format_chain(values), parse=parse_chain, format=format_chain,
            canonical=lambda g: format_chain(op for op in parse_chain(g) if op != "identity") or "identity",
            options=(Param("length", int, 2, "ops in the chain", low=1, high=6),), doc="A chain of activations.")]


@pytest.fixture
def chain_plugin(fresh_plugins):
    name = register_plugin(ChainCellPlugin(), name="chain_cells")
    yield name
    unregister_plugin(name)


def test_a_third_party_genotype_kind_is_used_from_a_space_document(chain_plugin):
    assert GENOTYPES.owner("chain") == "chain_cells"
    s = SearchSpace(cell_space({"genotype": "chain", "length": 3, "ops": ["identity", "sigmoid"], "name": "act"},
                               block="chain_cell"))
    trial = Recorder()
    doc, _ = s.sample_document(trial)
    assert trial.calls == [(f"act/step{k}", ("identity", "sigmoid")) for k in range(3)]
    assert doc["nodes"][1]["genotype"] == "identity>identity>identity"
    assert s.describe() == [("act", "chain genotype over identity, sigmoid")]
    graph = s.fixed({"act/step0": "sigmoid", "act/step1": "identity", "act/step2": "sigmoid"})
    assert graph.params("c")["genotype"] == "sigmoid>identity>sigmoid"
    assert graph.build()(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    default = SearchSpace(cell_space({"genotype": "chain"}, block="chain_cell"))
    assert default.grid() == {"c/genotype/step0": ["relu", "tanh"], "c/genotype/step1": ["relu", "tanh"]}
    with pytest.raises(GenotypeError, match=r"unknown chain op 'gelu'.*identity, relu, tanh, sigmoid"):
        SearchSpace(cell_space({"genotype": "chain", "ops": ["gelu"]}, block="chain_cell"))
    with pytest.raises(GenotypeError, match=r"option 'length'"):
        SearchSpace(cell_space({"genotype": "chain", "length": 7}, block="chain_cell"))


def test_an_unregistered_kind_is_unknown_again(fresh_plugins):
    name = register_plugin(ChainCellPlugin(), name="chain_cells")
    SearchSpace(cell_space({"genotype": "chain"}, block="chain_cell"))
    unregister_plugin(name)
    with pytest.raises(GenotypeError, match="unknown genotype kind 'chain'; known kinds: darts, nb201"):
        SearchSpace(cell_space({"genotype": "chain"}, block="nb201_cell"))


# -- a faulty kind is the plugin's problem, named ------------------------------------------------------------------


class BadKinds:
    @staticmethod
    @hookimpl
    def nascore_genotypes():
        return [GenotypeSpec(name="lopsided", ops=("a", "b"), default_ops=("c",), decisions=list,
                             compose=str, parse=str, format=str)]


class BadDecisions:
    @staticmethod
    @hookimpl
    def nascore_genotypes():
        return [GenotypeSpec(name="dup", ops=("a", "b"), decisions=lambda ops: [Decision("x", ops)] * 2,
                             compose="".join, parse=str, format=str)]


def test_a_malformed_kind_is_reported_and_the_others_load(fresh_plugins):
    register_plugin(BadKinds(), name="bad_kinds")
    assert any("bad_kinds" in p and "default op 'c'" in p for p in GENOTYPES.problems()), GENOTYPES.problems()
    assert "nb201" in GENOTYPES


def test_bad_decisions_name_the_kind(fresh_plugins):
    register_plugin(BadDecisions(), name="bad_decisions")
    with pytest.raises(PluginError, match="genotype kind 'dup'.*unique names"):
        SearchSpace(cell_space({"genotype": "dup"}))


def test_genotype_expression_is_a_plain_value_object():
    spec = get_genotype("darts")
    a, b = Genotype.of(spec, None, {"nodes": 2}), Genotype.of(spec, None, {})
    same = Genotype.of(spec, list(DARTS_CHOICES), {"nodes": 2})
    assert a == same and hash(a) == hash(same) and a != b
    assert a.kind == "darts" and dict(b.options) == {"nodes": 4} and len(b.decisions) == 16
