"""SearchConfig: every setting declared once as a Param; errors name the key, what was found and what was expected."""

import pytest
import yaml

from nascore.errors import ParamError
from nascore.io.settings import schema_of
from nascore.nas.config import SearchConfig


def test_structured_settings_are_normalised_and_written_as_yaml_writes_them():
    config = SearchConfig.merge({"objectives": "params", "constraints": {"max_params": 5e5}},
                                {"train": {"lr": 0.1}, "objectives": ["val_acc", "params"]})
    assert config.objectives == ["val_acc", "params"] and config.directions == ["maximize", "minimize"]
    assert config.constraints == {"max_params": 5e5} and config.train == {"lr": 0.1}
    assert yaml.safe_load(yaml.safe_dump(config.to_dict()))["objectives"] == ["val_acc", "params"]
    assert SearchConfig.merge({"objectives": "macs"}).objectives == ["macs"]   # YAML's shorthand for one
    assert SearchConfig().train is not SearchConfig().train                    # defaults are not shared
    assert {p.name for p in schema_of(SearchConfig)} >= {"objectives", "constraints", "train", "data_params",
                                                         "strategy_options", "evaluator_options"}


@pytest.mark.parametrize("layer, message", [
    ({"objectives": ["accuracy"]}, "parameter 'objectives': got 'accuracy', expected one of ['val_acc'"),
    ({"objectives": ["test_ac"]}, "(did you mean 'test_acc'"),
    ({"objectives": []}, "parameter 'objectives': got an empty list, expected at least one item"),
    ({"objectives": ["params", "params"]}, "parameter 'objectives': got 'params' twice, expected each item once"),
    ({"objectives": 3}, "parameter 'objectives': got 3 (int), expected list of strings"),
    ({"constraints": {"max_parms": 1}}, "parameter 'constraints': 'max_parms': unknown constraint (did you mean "
                                        "'max_params'"),
    ({"constraints": {"max_params": 0}}, "parameter 'constraints': 'max_params': got 0, expected a positive number"),
    ({"constraints": {"max_macs": True}}, "'max_macs': got True, expected a positive number"),
    ({"constraints": [1]}, "parameter 'constraints': got [1] (list), expected mapping"),
    ({"train": "fast"}, "parameter 'train': got 'fast' (str), expected mapping"),
    ({"data_params": [1]}, "parameter 'data_params': got [1] (list), expected mapping"),
    ({"strategy_options": 1}, "parameter 'strategy_options': got 1 (int), expected mapping"),
    ({"evaluator_options": "x"}, "parameter 'evaluator_options': got 'x' (str), expected mapping"),
    ({"cpus_per_trial": 0}, "parameter 'cpus_per_trial': got 0.0, expected a number > 0"),
])
def test_bad_settings_name_the_key_what_was_found_and_what_was_expected(layer, message):
    with pytest.raises(ParamError) as info:
        SearchConfig.merge(layer, where="space.yaml: search")
    assert str(info.value).startswith("space.yaml: search: parameter"), str(info.value)
    assert message in str(info.value)
