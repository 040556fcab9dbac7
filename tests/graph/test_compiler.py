"""The compiler: straight-line generated code, stable parameter names, TorchScript / compile / export parity."""

from __future__ import annotations

import pytest
import torch

from nascore import Graph
from tests.conftest import GRAPHS


def _small(name, side=64):
    g = Graph.load(GRAPHS / f"{name}.yaml")
    g.input_shape = (3, side, side)
    g._touch()
    return g


def test_generated_forward_is_straight_line_code():
    model = _small("resnet18").build()
    assert isinstance(model, torch.fx.GraphModule)
    code = model.code
    assert "for " not in code and "while " not in code
    assert "self.layer1[0](" in code or "getattr(self.layer1, \"0\")(" in code or "self.layer1" in code
    assert code.count("\n") > 10


def test_parameter_names_are_node_names_and_stable():
    g = _small("resnet18")
    a, b = g.build(), g.build()
    keys = list(a.state_dict())
    assert keys == list(b.state_dict())
    assert any(k.startswith("layer1.0.") for k in keys) and any(k.startswith("fc.") for k in keys)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x))


def test_drop_path_schedule_grows_linearly():
    from nascore.blocks.layers import DropPath

    g = _small("efficientnet_b0")
    model = g.build(drop_path_rate=0.2)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    # timm's rule: block i of n gets rate * i / (n - 1); blocks without a residual (stage starts) hold no DropPath
    blocks = [n for n in g.analyse().order if g.analyse().nodes[n].spec.param("drop_path") is not None]
    step = 0.2 / (len(blocks) - 1)
    assert rates == sorted(rates) and 0.2 - 2 * step <= rates[-1] <= 0.2
    assert all(r / step == pytest.approx(round(r / step)) for r in rates)  # every rate is a multiple of the step
    assert rates[0] <= 2 * step


def test_multi_output_graph_returns_a_tuple():
    g = _small("resnet18_fpn_pan", 128)
    model = g.build().eval()
    outs = model(torch.randn(1, 3, 128, 128))
    assert isinstance(outs, tuple) and len(outs) == 3
    assert [tuple(o.shape[1:]) for o in outs] == list(g.analyse().outputs.values())


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchscript_trace_and_export_match_eager(name):
    torch.manual_seed(0)
    model = _small(name).build().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.jit.trace(model, x)(x), expected)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), expected)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torch_compile_matches_eager(name):
    torch.manual_seed(0)
    model = _small(name, 32).build().eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model)
        torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)


def test_analysis_matches_built_model_for_every_zoo_graph():
    """The weight-free analysis equals the real module: output shapes and parameter counts."""
    from nascore.blocks.testing import measure

    for path in sorted(GRAPHS.glob("*.yaml")):
        g = Graph.load(path)
        with torch.device("meta"):
            model = g.build()
        real = measure(model, [g.input_shape])
        predicted = g.analyse()
        assert real.params == predicted.params, path.name
        assert list(real.outputs.values()) == list(predicted.outputs.values()), path.name
        assert real.macs == predicted.macs, path.name
