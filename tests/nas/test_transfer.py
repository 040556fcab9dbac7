"""Transfer learning in a search: the `train` evaluator starts each candidate from a pretrained export's matching
tensors (a searched head on a pretrained backbone), ``freeze`` keeps the backbone exactly as loaded, and every bad
option is refused before the search creates anything."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nascore.errors import EvaluatorError
from nascore.exporting.verify import read_weights

BACKBONE = [
    {"name": "stem", "block": "conv_bn_act", "out": 8},
    {"name": "body", "block": "conv_bn_act", "out": 16, "stride": 2},
]
PRETRAINED = {"name": "pretrained", "input": [1, 8, 8],
              "nodes": [*BACKBONE, {"name": "gap", "block": "global_avg_pool"},
                        {"name": "fc", "block": "linear", "out": 10}]}
SPACE = {
    "name": "head_search",
    "search": {"data": "digits", "epochs": 1, "trials": 2, "strategy": "random", "train": {"batch_size": 64}},
    "graph": {"input": [1, 8, 8], "nodes": [
        *BACKBONE,
        {"name": "head", "block": "conv_bn_act", "out": {"choice": [16, 24]}, "kernel": {"choice": [1, 3]}},
        {"name": "gap", "block": "global_avg_pool"},
        {"name": "fc", "block": "linear", "out": 10},
    ]},
}


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """An export folder of a 'pretrained' backbone (random weights and statistics, a fixed draw)."""
    from nascore.exporting.package import export
    from nascore.graph.document import graph_from_dict

    folder = tmp_path_factory.mktemp("pretrained")
    graph = graph_from_dict(PRETRAINED, "pretrained")
    torch.manual_seed(7)
    model = graph.build()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.uniform_(0.5, 1.5)        # far from any fresh initialisation, statistics included
    (folder / "src").mkdir()
    (folder / "src" / "graph.yaml").write_text(yaml.safe_dump(graph.to_dict()))
    from safetensors.torch import save_file

    save_file(model.state_dict(), str(folder / "src" / "model.safetensors"))
    return export(folder / "src", folder / "export", formats="weights")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "head_search.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def test_a_search_trains_a_head_on_a_frozen_pretrained_backbone(pretrained, space_file, tmp_path, local_ray):
    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir

    run = search(space_file, runs_root=tmp_path / "runs", workers=1, progress=None,
                 evaluator_options={"weights": str(pretrained), "freeze": "stem,body"})
    summary = RunDir.open(run).summary()
    assert summary["counts"]["complete"] == 2
    source = read_weights(pretrained / "model.safetensors")
    for trial in sorted((run / "trials").iterdir()):
        weights = read_weights(trial / "model.safetensors")
        backbone = [k for k in weights if k.split(".")[0] in ("stem", "body")]
        assert backbone and all(torch.equal(weights[k], source[k]) for k in backbone)   # parameters and statistics
        assert not torch.equal(weights["fc.weight"], source["fc.weight"])               # the head trained


def test_without_freeze_the_pretrained_tensors_are_the_start_and_are_trained(pretrained, space_file, tmp_path,
                                                                              local_ray):
    from nascore.nas.driver import search

    run = search(space_file, runs_root=tmp_path / "runs", workers=1, progress=None, trials=1,
                 evaluator_options={"weights": str(pretrained)})
    source = read_weights(pretrained / "model.safetensors")
    weights = read_weights(next((run / "trials").iterdir()) / "model.safetensors")
    moved = weights["stem.conv.weight"] - source["stem.conv.weight"]
    assert 0 < moved.abs().max() < 0.5     # trained from the pretrained values, not from a fresh draw


@pytest.mark.parametrize("options, pattern", [
    ({"weights": "{missing}"}, r"option 'weights'.*no such file|option 'weights'.*not found"),
    ({"weights": "{pretrained}", "freeze": "stme"}, r"option 'freeze'.*'stme' is not a node.*'stem'"),
    ({"freeze": "stem"}, r"option 'freeze'.*without pretrained weights"),
    ({"weights": "{foreign}"}, r"option 'weights'.*no tensor of .* fits a point of space 'head_search'"),
])
def test_bad_transfer_options_are_refused_before_anything_is_created(pretrained, space_file, tmp_path, options,
                                                                      pattern):
    from safetensors.torch import save_file

    from nascore.nas.driver import search

    foreign = tmp_path / "foreign.safetensors"
    save_file({"other.weight": torch.zeros(2, 2)}, str(foreign))
    paths = {"missing": tmp_path / "nothing.safetensors", "pretrained": pretrained, "foreign": foreign}
    options = {k: v.format(**paths) for k, v in options.items()}
    with pytest.raises(EvaluatorError, match=pattern):
        search(space_file, runs_root=tmp_path / "runs", workers=1, progress=None, evaluator_options=options)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_head_is_searched_on_an_imported_torchvision_resnet18(tmp_path, local_ray):
    """The whole path on a real architecture: a torchvision resnet18 state dict (the zoo tests' formula weights under
    torchvision's names) imported with `nascore import`, then a head searched on its frozen backbone at 32x32."""
    from safetensors.torch import save_file

    from nascore.exporting.pretrained import import_weights
    from nascore.nas.driver import search
    from nascore.nas.rundir import RunDir
    from tests.zoo.reference_outputs import reference_state

    weights = tmp_path / "resnet18.safetensors"
    save_file({k: v.float().contiguous() for k, v in reference_state("torchvision", "resnet18").items()},
              str(weights))
    imported = import_weights("torchvision", "resnet18", weights, tmp_path / "resnet18", formats="weights")
    zoo = yaml.safe_load(Path(imported, "graph.yaml").read_text())
    backbone = [n for n in zoo["nodes"] if n["name"] in ("stem", "pool", "layer1", "layer2")]
    space = {"name": "resnet18_head", "search": {
        "data": "synthetic", "data_params": {"n": 120, "shape": [3, 32, 32]}, "epochs": 1, "trials": 1,
        "strategy": "random", "train": {"batch_size": 24}},
        "graph": {"input": [3, 32, 32], "nodes": [
            *backbone,
            {"name": "head", "block": "conv_bn_act", "out": {"choice": [32, 64]}, "kernel": 1},
            {"name": "gap", "block": "global_avg_pool"},
            {"name": "fc", "block": "linear", "out": 10}]}}
    space_file = tmp_path / "resnet18_head.yaml"
    space_file.write_text(yaml.safe_dump(space))
    run = search(space_file, runs_root=tmp_path / "runs", workers=1, progress=None,
                 evaluator_options={"weights": str(imported), "freeze": "stem,pool,layer1,layer2"})
    assert RunDir.open(run).summary()["counts"]["complete"] == 1
    source = read_weights(imported / "model.safetensors")
    trained = read_weights(next((run / "trials").iterdir()) / "model.safetensors")
    backbone_keys = [k for k in trained if k.split(".")[0] in ("stem", "layer1", "layer2")]
    assert len(backbone_keys) > 50 and all(torch.equal(trained[k], source[k]) for k in backbone_keys)
