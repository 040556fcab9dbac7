"""The model zoo matches the reference implementations: parameters exactly, MACs within 2% (REFERENCE.md)."""

from __future__ import annotations

import pytest

from nascore import Graph
from tests.conftest import GRAPHS

REFERENCE = {  # model: (input side, parameters, GMACs or None)
    "resnet18": (224, 11_689_512, 1.819),
    "resnet50": (224, 25_557_032, 4.112),
    "resnext50_32x4d": (224, 25_028_904, 4.259),
    "se_resnet50": (224, 28_088_024, None),
    "mobilenet_v2": (224, 3_504_872, 0.314),
    "mobilenet_v3_large": (224, 5_483_032, 0.226),
    "efficientnet_b0": (224, 5_288_548, 0.402),
    "shufflenet_v2_x1_0": (224, 2_278_604, 0.149),
    "squeezenet1_1": (224, 1_235_496, 0.349),
    "densenet121": (224, 7_978_856, 2.866),
    "googlenet": (224, 6_624_904, 1.505),
    "inception_v3": (299, 23_834_568, 5.731),
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_zoo_matches_reference(name):
    side, params, gmacs = REFERENCE[name]
    g = Graph.load(GRAPHS / f"{name}.yaml")
    assert g.input_shape == (3, side, side)
    a = g.analyse()
    assert a.params == params
    if gmacs is not None:
        assert a.macs / 1e9 == pytest.approx(gmacs, rel=0.02)
    assert a.outputs == {g.nodes[-1]: (1000,)}


# torchvision's efficientnet_b1..b7 parameter counts; (width, depth, resolution) from the EfficientNet paper.
EFFICIENTNET = {
    "b1": ((1.0, 1.1, 240), 7_794_184),
    "b2": ((1.1, 1.2, 260), 9_109_994),
    "b3": ((1.2, 1.4, 300), 12_233_232),
    "b4": ((1.4, 1.8, 380), 19_341_616),
    "b5": ((1.6, 2.2, 456), 30_389_784),
    "b6": ((1.8, 2.6, 528), 43_040_704),
    "b7": ((2.0, 3.1, 600), 66_347_960),
}


@pytest.mark.parametrize("variant", sorted(EFFICIENTNET))
def test_scaling_b0_gives_the_real_efficientnets(variant):
    (width, depth, side), params = EFFICIENTNET[variant]
    b0 = Graph.load(GRAPHS / "efficientnet_b0.yaml")
    scaled = b0.scale(width=width, depth=depth, resolution=side)
    assert scaled.analyse().params == params
    assert scaled.input_shape == (3, side, side)


def test_detection_backbone_neck_has_three_outputs():
    g = Graph.load(GRAPHS / "resnet18_fpn_pan.yaml")
    outs = g.analyse().outputs
    assert len(outs) == 3
    sides = [s[1] for s in outs.values()]
    assert sides == [28, 14, 7]
