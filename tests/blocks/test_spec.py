"""Param, the one schema of block parameters, settings and options."""

import pytest

from nascore.blocks.spec import Param
from nascore.errors import ParamError


def test_mapping_params_take_string_keyed_mappings():
    p = Param("options", "mapping", {})
    assert p.check({"a": 1}) == {"a": 1} and type(p.check({"a": 1}.items().mapping)) is dict
    with pytest.raises(ParamError, match=r"parameter 'options': got \[1\] \(list\), expected mapping"):
        p.check([1])
    with pytest.raises(ParamError, match="expected mapping"):
        p.check({1: "a"})


def test_choices_apply_to_each_item_of_a_list():
    p = Param("acts", "strs", ("relu",), choices=("relu", "gelu", "silu"))
    assert p.check(["gelu", "relu"]) == ("gelu", "relu")
    with pytest.raises(ParamError, match=r"got 'gelus', expected one of \['relu', 'gelu', 'silu'\] \(did you mean "
                                         r"'gelu'"):
        p.check(["relu", "gelus"])
    assert Param("k", "ints", (3,), choices=(3, 5)).check([5, 3]) == (5, 3)
    assert Param("act", str, "relu", choices=("relu", "gelu")).check("gelu") == "gelu"
