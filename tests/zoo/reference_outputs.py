"""The recorded reference outputs of tests/zoo/data/SOURCE_reference.json (written by
benchmarks/make_SOURCE_reference.py) recomputed with nascore: the zoo graph filled, through the checked-in mapping,
with the formula weights of tests/zoo/reference_weights.py under the source's names, run in float64."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nascore.exporting.pretrained import convert, load_mapping, to_source_names
from tests.zoo.reference_weights import reference_input, reference_tensor

DATA = Path(__file__).parent / "data"
TOLERANCE = 1e-9          # relative to the largest output; float64 rounding differences across torch versions


def load_fixture(source: str) -> dict[str, Any]:
    return json.loads((DATA / f"{source}_reference.json").read_text())


def reference_state(source: str, name: str) -> dict[str, torch.Tensor]:
    """The formula weights of ``source``'s ``name``: its names and shapes, as a file of that library holds them."""
    mapping = load_mapping(source, name)
    with torch.device("meta"):
        own = mapping.graph().build().state_dict()
    return {key: reference_tensor(key, like) for key, like in to_source_names(mapping, own).items()}


def reference_model(source: str, name: str) -> nn.Module:
    """The zoo graph of ``source``'s ``name`` with the formula weights loaded through the mapping, in float64."""
    mapping = load_mapping(source, name)
    model = mapping.graph().build().eval()
    model.load_state_dict(convert(mapping, reference_state(source, name), model.state_dict(), where=name))
    return model.double()


def outputs(fixture: dict[str, Any], name: str, model: nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(reference_input(tuple(fixture["models"][name]["input"])))


def assert_matches(fixture: dict[str, Any], name: str, out: torch.Tensor) -> None:
    ref = fixture["models"][name]
    scale = ref["max_abs"]
    step = fixture["sampled_every"]
    sampled = torch.tensor(ref["sampled"], dtype=torch.float64)
    assert (out[:, ::step] - sampled).abs().max().item() <= TOLERANCE * scale
    assert (out.sum(1) - torch.tensor(ref["sum"], dtype=torch.float64)).abs().max().item() <= TOLERANCE * scale * 1000
    sum_sq = torch.tensor(ref["sum_sq"], dtype=torch.float64)
    assert ((out.pow(2).sum(1) - sum_sq).abs() / sum_sq).max().item() <= TOLERANCE


__all__ = ["TOLERANCE", "assert_matches", "load_fixture", "outputs", "reference_model", "reference_state"]
