"""timm weights in: the zoo graphs compute timm's exact function through graphs/timm/*.yaml, and
`nascore import timm MODEL` checks a timm-named file and exports it.

timm is no dependency: its outputs are recorded once, beside torchvision, by

    /tmp/nascore-tv/bin/python benchmarks/make_timm_reference.py

(its docstring pins timm and shows the environment). Both sides fill every tensor from tests/zoo/reference_weights.py
under timm's names; the script printed the side-by-side difference (0 in float32 and float64 for all but
mobilenetv3_large_100, whose 1x1 conv_head is a linear layer here: 3e-7 and 8e-16 relative, summation order). The same
fixture format and helpers as tests/zoo/test_torchvision_reference.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

import nascore
from nascore import Graph
from nascore.cli import main
from nascore.errors import ExportError
from nascore.exporting.pretrained import (
    convert,
    known_models,
    load_mapping,
    pretrained_source,
    sources,
    to_source_names,
    zoo_dir,
)
from tests.zoo.reference_outputs import assert_matches, load_fixture, outputs, reference_model, reference_state

FIXTURE = load_fixture("timm")
MODELS = sorted(FIXTURE["models"])


def test_every_timm_mapping_has_a_reference():
    assert known_models("timm") == MODELS
    assert len(MODELS) == 9
    assert {"timm", "torchvision"} <= set(sources())
    assert load_mapping("timm", "seresnet50").graph_name == "se_resnet50"
    assert load_mapping("timm", "mobilenetv2_100").graph_name == "mobilenet_v2"


@pytest.mark.parametrize("name", MODELS)
def test_zoo_graph_computes_timms_function(name):
    torch.set_num_threads(1)
    assert_matches(FIXTURE, name, outputs(FIXTURE, name, reference_model("timm", name)))


def test_timms_mobilenetv3_needs_its_own_graph():
    """timm builds MobileNetV3-Large with PyTorch's default batch-norm eps (1e-5), torchvision with 1e-3: the
    torchvision graph given timm's weights computes another function, hence graphs/mobilenetv3_large_100.yaml."""
    variant = Graph.load(zoo_dir() / "mobilenetv3_large_100.yaml")
    assert variant.analyse().params == Graph.load(zoo_dir() / "mobilenet_v3_large.yaml").analyse().params == 5_483_032
    model = reference_model("timm", "mobilenetv3_large_100")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
    with pytest.raises(AssertionError):
        assert_matches(FIXTURE, "mobilenetv3_large_100", outputs(FIXTURE, "mobilenetv3_large_100", model))


@pytest.fixture(scope="module")
def mobilenetv3_file(tmp_path_factory):
    """A timm-named mobilenetv3_large_100 file (conv_head.weight as timm stores it, [1280, 960, 1, 1])."""
    state = reference_state("timm", "mobilenetv3_large_100")
    assert list(state["conv_head.weight"].shape) == [1280, 960, 1, 1]
    path = tmp_path_factory.mktemp("timm") / "mobilenetv3_large_100.pth"
    torch.save(state, path)
    return path, state


def test_cli_import_writes_an_export_that_computes_timms_function(mobilenetv3_file, tmp_path):
    path, _ = mobilenetv3_file
    result = CliRunner().invoke(main, ["import", "timm", "mobilenetv3_large_100", "--weights", str(path),
                                       "-o", str(tmp_path / "out"), "--format", "weights"])
    assert result.exit_code == 0, result.output
    assert "model.safetensors" in result.output
    loaded = nascore.load_model(tmp_path / "out").eval().double()
    assert_matches(FIXTURE, "mobilenetv3_large_100", outputs(FIXTURE, "mobilenetv3_large_100", loaded))


def _refusal(state, tmp_path, model="mobilenetv3_large_100") -> str:
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ExportError) as info:
        pretrained_source("timm", model, tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(info.value)
    return str(info.value)


def test_refuses_naming_the_first_tensor_that_does_not_fit(mobilenetv3_file, tmp_path):
    _, state = mobilenetv3_file
    flat = {**state, "conv_head.weight": state["conv_head.weight"].reshape(1280, 960)}
    message = _refusal(flat, tmp_path)
    assert "'conv_head.weight' has shape [1280, 960]" in message and "[1280, 960, 1, 1]" in message
    assert "timm's mobilenetv3_large_100" in message
    message = _refusal({k: v for k, v in state.items() if k != "classifier.bias"}, tmp_path)
    assert "'classifier.bias'" in message and "missing" in message


def test_refuses_a_torchvision_file_for_a_timm_model(tmp_path):
    """torchvision's mobilenet_v3_large names its tensors features.0.0.weight...: the first is named."""
    message = _refusal(reference_state("torchvision", "mobilenet_v3_large"), tmp_path)
    assert "'features.0.0.weight' is not part of timm's mobilenetv3_large_100" in message


def test_cli_refusal_names_the_tensor(mobilenetv3_file, tmp_path):
    _, state = mobilenetv3_file
    torch.save({**state, "blocks.9.0.conv.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    bad = CliRunner().invoke(main, ["import", "timm", "mobilenetv3_large_100", "--weights",
                                    str(tmp_path / "bad.pth"), "-o", str(tmp_path / "out")])
    assert bad.exit_code != 0
    assert "'blocks.9.0.conv.weight' is not part of timm's mobilenetv3_large_100" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "out").exists()
    unknown = CliRunner().invoke(main, ["import", "timm", "mobilenetv3_large", "--weights",
                                        str(tmp_path / "bad.pth"), "-o", str(tmp_path / "out")])
    assert unknown.exit_code != 0 and "mobilenetv3_large_100" in unknown.output


def test_inception_auxiliary_head_is_left_out_and_noted():
    """timm's inception_v3.tv_in1k file holds AuxLogits.*, which the graph leaves out (checked on shapes only)."""
    mapping = load_mapping("timm", "inception_v3")
    with torch.device("meta"):
        own = mapping.graph().build().state_dict()
        state = {**to_source_names(mapping, own), "AuxLogits.fc.weight": torch.empty(1000, 768)}
    assert set(convert(mapping, state, own, where="inception_v3.pth")) == set(own)
    assert "mean 0.5" in mapping.note
