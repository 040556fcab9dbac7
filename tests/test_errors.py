"""The plugin boundary (nascore.errors.plugin_code): one rule for every place nascore calls a plugin's code."""

import pytest

from nascore.errors import ExportError, NascoreError, PluginError, ShapeError, plugin_code


def test_a_nascore_error_passes_through_untouched():
    err = ShapeError("does not fit", where="node 'a'")
    with pytest.raises(ShapeError) as info, plugin_code("block 'x''s infer"):
        raise err
    assert info.value is err


def test_any_other_exception_is_the_plugins_bug_in_one_line():
    with pytest.raises(PluginError) as info, plugin_code("block 'x''s canonical", where="plugin 'p'"):
        raise RuntimeError("first\nsecond")
    assert str(info.value) == "plugin 'p': block 'x''s canonical raised RuntimeError: first"
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_the_error_class_message_and_chaining_are_the_callers():
    with pytest.raises(ShapeError, match=r"^block 'b' cannot take inputs 8: its module raised ValueError: x{200}$"):
        with plugin_code("block 'b' cannot take inputs 8: its module", ShapeError):
            raise ValueError("x" * 500)
    cause = OSError("No space left on device")
    with pytest.raises(ExportError, match=r"^format onnx: OSError: No space left on device$") as info:
        with plugin_code(None, ExportError, "format onnx", chain=True):
            raise cause
    assert info.value.__cause__ is cause


def test_base_exceptions_are_not_caught():
    with pytest.raises(KeyboardInterrupt), plugin_code("anything"):
        raise KeyboardInterrupt
    assert issubclass(PluginError, NascoreError)
