"""The classification zoo graphs compute torchvision's exact function, through the checked-in name mappings.

torchvision does not install beside the pinned torch (2.13, CPU), so its outputs are recorded once in a separate
environment (torch 2.14.1 + torchvision 0.29.1) by

    /tmp/nascore-tv/bin/python benchmarks/make_torchvision_reference.py

(its docstring shows how to make that environment). Both sides fill every tensor from tests/zoo/reference_weights.py,
a formula of the tensor's torchvision name that does not depend on torch's random generator, and run in float64;
the script also wrote graphs/torchvision/*.yaml and printed the side-by-side difference (0 for all eleven, in float32
and float64). Here nascore recomputes the outputs under the pinned torch and compares them with the recorded ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from nascore.exporting.pretrained import convert, known_models, load_mapping
from tests.zoo.reference_weights import reference_input, reference_tensor

FIXTURE = json.loads((Path(__file__).parent / "data" / "torchvision_reference.json").read_text())
MODELS = sorted(FIXTURE["models"])
TOLERANCE = 1e-9          # relative to the largest output; float64 rounding differences across torch versions


def _reference_model(name: str) -> nn.Module:
    mapping = load_mapping("torchvision", name)
    model = mapping.graph().build().eval()
    own = model.state_dict()
    weights = {key: reference_tensor(key, own[mapping.target(key)]) for key in
               (mapping.source_key(k) for k in own)}
    model.load_state_dict(convert(mapping, weights, own, where=name))
    return model.double()


def _outputs(name: str, model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(reference_input(tuple(FIXTURE["models"][name]["input"])))


def _assert_matches(name: str, out: torch.Tensor) -> None:
    ref = FIXTURE["models"][name]
    scale = ref["max_abs"]
    step = FIXTURE["sampled_every"]
    sampled = torch.tensor(ref["sampled"], dtype=torch.float64)
    assert (out[:, ::step] - sampled).abs().max().item() <= TOLERANCE * scale
    assert (out.sum(1) - torch.tensor(ref["sum"], dtype=torch.float64)).abs().max().item() <= TOLERANCE * scale * 1000
    sum_sq = torch.tensor(ref["sum_sq"], dtype=torch.float64)
    assert ((out.pow(2).sum(1) - sum_sq).abs() / sum_sq).max().item() <= TOLERANCE


def test_every_torchvision_mapping_has_a_reference():
    assert known_models("torchvision") == MODELS
    assert len(MODELS) == 11


@pytest.mark.parametrize("name", MODELS)
def test_zoo_graph_computes_torchvisions_function(name):
    torch.set_num_threads(1)
    _assert_matches(name, _outputs(name, _reference_model(name)))


def test_the_reference_sees_norm_settings():
    """With PyTorch's default eps instead of torchvision's 1e-3 MobileNetV3 no longer matches: the fixture would
    catch a lost norm setting (the difference issue 13 found)."""
    model = _reference_model("mobilenet_v3_large")
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-5
    with pytest.raises(AssertionError):
        _assert_matches("mobilenet_v3_large", _outputs("mobilenet_v3_large", model))
