"""Pretrained weights in: a torchvision-named state dict loaded into its zoo graph, checked, and exported.

No torchvision is needed: the torchvision-named files are made from a nascore model through the inverse mapping.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import nascore
from nascore.cli import main
from nascore.errors import ExportError, NascoreError
from nascore.exporting.pretrained import (
    convert,
    import_weights,
    known_models,
    load_mapping,
    pretrained_source,
    to_source_names,
)


@pytest.fixture(scope="module")
def resnet18():
    """A seeded resnet18 and its state dict under torchvision's names."""
    torch.manual_seed(0)
    mapping = load_mapping("torchvision", "resnet18")
    model = mapping.graph().build().eval()
    with torch.no_grad():       # non-trivial running statistics, so a mix-up of tensors would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model, to_source_names(mapping, model.state_dict())


def test_torchvision_names(resnet18):
    _, state = resnet18
    assert {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
            "layer2.0.downsample.1.weight", "fc.weight", "fc.bias"} <= set(state)
    assert len(state) == 122


def test_round_trip_export_loads_and_computes_the_same(resnet18, tmp_path):
    model, state = resnet18
    torch.save(state, tmp_path / "resnet18.pth")
    out = import_weights("torchvision", "resnet18", tmp_path / "resnet18.pth", tmp_path / "export", formats="weights")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["weights"] == "pretrained"
    assert manifest["source"]["kind"] == "pretrained" and manifest["source"]["model"] == "resnet18"
    loaded = nascore.load_model(out)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_safetensors_and_wrapped_checkpoints_load(resnet18, tmp_path):
    from safetensors.torch import save_file

    model, state = resnet18
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    torch.save({"epoch": 90, "state_dict": state}, tmp_path / "ckpt.pth")
    for path in (tmp_path / "w.safetensors", tmp_path / "ckpt.pth"):
        src = pretrained_source("torchvision", "resnet18", path)
        assert all(torch.equal(src.weights[k], v) for k, v in model.state_dict().items())


def _refusal(state, tmp_path) -> str:
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ExportError) as info:
        pretrained_source("torchvision", "resnet18", tmp_path / "bad.pth")
    assert str(tmp_path / "bad.pth") in str(info.value)
    return str(info.value)


def test_refuses_naming_the_tensor_that_does_not_fit(resnet18, tmp_path):
    _, state = resnet18
    bad = dict(state)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    message = _refusal(bad, tmp_path)
    assert "'layer1.0.conv1.weight'" in message and "[64, 64, 1, 1]" in message and "[64, 64, 3, 3]" in message


def test_refuses_an_unexpected_tensor(resnet18, tmp_path):
    _, state = resnet18
    message = _refusal({**state, "layer5.0.conv1.weight": torch.zeros(1)}, tmp_path)
    assert "'layer5.0.conv1.weight' is not part of torchvision's resnet18" in message


def test_refuses_a_missing_tensor(resnet18, tmp_path):
    _, state = resnet18
    message = _refusal({k: v for k, v in state.items() if k != "fc.bias"}, tmp_path)
    assert "'fc.bias'" in message and "missing" in message


def test_a_file_from_before_num_batches_tracked_loads(resnet18):
    model, state = resnet18
    mapping = load_mapping("torchvision", "resnet18")
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    converted = convert(mapping, old, model.state_dict(), where="old.pth")
    assert set(converted) == set(model.state_dict())


def test_auxiliary_heads_are_left_out():
    mapping = load_mapping("torchvision", "googlenet")
    own = mapping.graph().build().state_dict()
    state = {**to_source_names(mapping, own), "aux1.fc2.weight": torch.zeros(1000, 1024)}
    assert set(convert(mapping, state, own, where="googlenet.pth")) == set(own)
    assert "mean 0.5" in mapping.note


class NotWeights:
    """Pickled as a reference to code: weights_only=True refuses to load it."""


def test_refuses_pickled_code_and_unknown_models(tmp_path):
    torch.save({"model": NotWeights()}, tmp_path / "code.pth")
    with pytest.raises(ExportError, match="weights_only=True"):
        pretrained_source("torchvision", "resnet18", tmp_path / "code.pth")
    with pytest.raises(ExportError, match="resnet50"):
        load_mapping("torchvision", "resnet_50")
    with pytest.raises(ExportError, match="torchvision"):
        load_mapping("keras", "resnet50")
    assert "inception_v3" in known_models("torchvision")


def test_cli_import(resnet18, tmp_path):
    _, state = resnet18
    torch.save(state, tmp_path / "resnet18.pth")
    runner = CliRunner()
    ok = runner.invoke(main, ["import", "torchvision", "resnet18", "--weights", str(tmp_path / "resnet18.pth"),
                              "-o", str(tmp_path / "out"), "--format", "weights"])
    assert ok.exit_code == 0, ok.output
    assert "model.safetensors" in ok.output
    torch.save({**state, "fc.bias": torch.zeros(10)}, tmp_path / "bad.pth")
    bad = runner.invoke(main, ["import", "torchvision", "resnet18", "--weights", str(tmp_path / "bad.pth"),
                               "-o", str(tmp_path / "out2")])
    assert bad.exit_code != 0
    assert "'fc.bias'" in bad.output and "Traceback" not in bad.output
    assert not (tmp_path / "out2").exists()
    assert issubclass(ExportError, NascoreError)
