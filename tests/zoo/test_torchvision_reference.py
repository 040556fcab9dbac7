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

import pytest
import torch
import torch.nn as nn

from nascore.exporting.pretrained import known_models
from tests.zoo.reference_outputs import assert_matches, load_fixture, outputs, reference_model

FIXTURE = load_fixture("torchvision")
MODELS = sorted(FIXTURE["models"])


def _reference_model(name: str) -> nn.Module:
    return reference_model("torchvision", name)


def _outputs(name: str, model: nn.Module) -> torch.Tensor:
    return outputs(FIXTURE, name, model)


def _assert_matches(name: str, out: torch.Tensor) -> None:
    assert_matches(FIXTURE, name, out)


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
