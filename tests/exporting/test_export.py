"""Export: every format written from real files, loaded back (the standalone ones in a process without nascore),
checksums that catch tampering and truncation, atomic replacement, crashes mid-export, run directories (a real
search, and a multi-objective one made by hand) and mobilenet_v2 through ONNX verification."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nascore import Graph, hookimpl
from nascore.errors import ChecksumError, ExportError, NascoreError
from nascore.exporting.package import export
from nascore.exporting.spec import EXPORTERS, ExporterSpec
from nascore.exporting.verify import load_model, read_manifest, verify_export
from tests.conftest import GRAPHS, SPACES

ALL_FORMATS = ("weights", "torchscript", "torch_export", "onnx")
ATOL, RTOL = 1e-4, 1e-3


def ensure_exporters() -> None:
    """Register the built-in exporters plugin when its entry point is not (yet) installed."""
    import nascore_plugins.exporters as module

    from nascore.ext import manager as plugins

    if not plugins.plugin_manager().is_registered(module):
        plugins.register_plugin(module, "nascore.exporters")


@pytest.fixture(autouse=True)
def _exporters():
    ensure_exporters()


def tiny_graph() -> Graph:
    g = Graph("tiny", (1, 8, 8))
    g.add("stem", "conv_bn_act", out=8)
    g.add("gap", "global_avg_pool")
    g.add("fc", "linear", out=10)
    return g


def trained_like(graph: Graph, seed: int = 1) -> dict[str, torch.Tensor]:
    """Weights as training leaves them: random parameters and non-default BatchNorm statistics."""
    torch.manual_seed(seed)
    model = graph.build()
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.5)
            else:
                t.fill_(7)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def write_folder(folder: Path, graph: Graph, weights: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    graph.save(folder / "graph.yaml")
    save_file(weights, str(folder / "model.safetensors"))
    return folder


def digest_tree(folder: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(parent: Path, name: str) -> list[str]:
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


def outputs(model, x) -> list[torch.Tensor]:
    with torch.no_grad():
        y = model(x)
    return list(y) if isinstance(y, (tuple, list)) else [y]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny graph's YAML and its export to every format (made once; tests that tamper copy it)."""
    ensure_exporters()
    root = tmp_path_factory.mktemp("tiny")
    tiny_graph().save(root / "tiny.yaml")
    out = export(root / "tiny.yaml", root / "export")
    return root / "tiny.yaml", out


@pytest.fixture
def tiny_copy(tiny, tmp_path):
    return Path(shutil.copytree(tiny[1], tmp_path / "copy"))


# -- the registry ---------------------------------------------------------------------------------------------------


def test_builtin_formats_are_registered_with_aliases():
    assert set(ALL_FORMATS) <= set(EXPORTERS.names())
    assert EXPORTERS.get("ts").name == "torchscript" and EXPORTERS.get("pt2").name == "torch_export"
    assert EXPORTERS.get("onnx").requires == ("onnx", "onnxscript", "onnxruntime")
    with pytest.raises(ExportError, match="did you mean 'onnx'"):
        EXPORTERS.get("onxx")
    with pytest.raises(ValueError, match="plain file name"):
        ExporterSpec("bad", "../model.bin", lambda *a: None)
    with pytest.raises(ValueError, match="plain file name"):
        ExporterSpec("bad", "manifest.json", lambda *a: None)


# -- a graph YAML to every format -----------------------------------------------------------------------------------


def test_yaml_exports_every_format_with_a_complete_manifest(tiny):
    yaml_path, out = tiny
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["graph.yaml", "manifest.json", "model.safetensors", "model.ts", "model.pt2", "model.onnx"])
    m = read_manifest(out)
    graph = Graph.load(yaml_path)
    analysis = graph.analyse()
    assert m["graph"] == {"name": "tiny", "hash": graph.structural_hash(), "params": analysis.params,
                          "macs": analysis.macs, "file": "graph.yaml"}
    assert m["weights"] == "untrained" and "not trained" in m["note"]
    assert m["input_shape"] == [1, 8, 8] and m["outputs"] == [{"name": "fc", "ref": "fc", "shape": ["batch", 10]}]
    assert m["torch_version"] == torch.__version__ and m["nascore_version"] and m["created"]
    assert m["source"]["kind"] == "graph" and m["source"]["path"] == str(yaml_path)
    assert set(m["formats"]) == set(ALL_FORMATS)
    for name, entry in m["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    onnx_info = m["formats"]["onnx"]
    assert onnx_info["exporter"] == "torch.onnx.export(dynamo=True)"
    assert onnx_info["atol"] == ATOL and onnx_info["rtol"] == RTOL and onnx_info["max_abs_error"] <= ATOL
    for fmt in ("torchscript", "torch_export", "onnx"):
        assert m["formats"][fmt]["batch"] == "dynamic" and m["formats"][fmt]["checked_batches"] == [2, 3]
    assert m["formats"]["torchscript"]["method"] == "script"
    assert verify_export(out) == []
    assert leftovers(out.parent, "export") == []


def test_load_model_equals_the_original_model(tiny):
    yaml_path, out = tiny
    torch.manual_seed(0)                          # untrained exports are built with seed 0
    original = Graph.load(yaml_path).build().eval()
    loaded = load_model(out)
    assert not loaded.training
    x = torch.randn(4, 1, 8, 8)
    for a, b in zip(outputs(original, x), outputs(loaded, x)):
        assert torch.equal(a, b)


def test_trained_weights_survive_export_exactly(tmp_path):
    graph = tiny_graph()
    weights = trained_like(graph)
    folder = write_folder(tmp_path / "trained", graph, weights)
    (folder / "metrics.json").write_text(json.dumps({"test_acc": 0.93, "val_acc": 0.91, "data": "digits",
                                                     "checkpoint": "/somewhere"}))
    out = export(folder, tmp_path / "out", formats=["torchscript"])
    m = read_manifest(out)
    assert m["weights"] == "trained" and "note" not in m
    assert m["metrics"] == {"test_acc": 0.93, "val_acc": 0.91, "data": "digits"}
    assert m["source"]["kind"] == "training"
    reference = graph.build().eval()
    reference.load_state_dict(weights)
    loaded = load_model(out)
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(outputs(reference, x)[0], outputs(loaded, x)[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)     # torch.jit.load is deprecated upstream
        scripted = torch.jit.load(str(out / "model.ts"))
    assert torch.equal(outputs(scripted, x)[0], outputs(reference, x)[0])
    for key, value in load_file(str(out / "model.safetensors")).items():
        assert torch.equal(value, weights[key])


# -- the standalone formats, without nascore ------------------------------------------------------------------------

STANDALONE = textwrap.dedent("""
    import importlib.abc, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("nascore", "nascore_plugins", "tests"):
                raise ImportError("nascore must not be needed to load " + name)
            return None

    sys.meta_path.insert(0, Block())
    try:
        import nascore
        raise SystemExit("the import blocker does not work")
    except ImportError:
        pass
    import numpy as np, onnxruntime as ort, torch
    from safetensors.torch import load_file

    out, ref = sys.argv[1], load_file(sys.argv[2])
    ts = torch.jit.load(out + "/model.ts")
    pt2 = torch.export.load(out + "/model.pt2").module()
    sess = ort.InferenceSession(out + "/model.onnx", providers=["CPUExecutionProvider"])
    for batch in ("2", "5"):
        x, want = ref["x" + batch], ref["y" + batch].numpy()
        with torch.no_grad():
            got = {"torchscript": ts(x).numpy(), "torch_export": pt2(x).numpy(),
                   "onnx": sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]}
        for fmt, y in got.items():
            assert y.shape == want.shape, (fmt, y.shape, want.shape)
            assert np.allclose(y, want, atol=1e-4, rtol=1e-3), (fmt, batch, float(np.abs(y - want).max()))
    assert not [m for m in sys.modules if m.split(".")[0] in ("nascore", "nascore_plugins")]
    print("standalone ok")
""")


def test_standalone_formats_load_without_nascore(tiny, tmp_path):
    _, out = tiny
    model = load_model(out)
    ref = {}
    for batch in (2, 5):   # the example batch, and another size: the batch dimension is dynamic
        x = torch.randn(batch, 1, 8, 8)
        ref[f"x{batch}"], ref[f"y{batch}"] = x, outputs(model, x)[0].contiguous()
    save_file(ref, str(tmp_path / "ref.safetensors"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    result = subprocess.run([sys.executable, "-I", "-c", STANDALONE, str(out), str(tmp_path / "ref.safetensors")],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "standalone ok" in result.stdout


# -- tampering is never a silent load -------------------------------------------------------------------------------


def _flip_byte(path: Path, offset: int = -20) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_weights_are_a_checksum_error(tiny_copy):
    _flip_byte(tiny_copy / "model.safetensors")           # same size, different content
    with pytest.raises(ChecksumError, match="model.safetensors.*sha256"):
        load_model(tiny_copy)
    assert any("model.safetensors" in p for p in verify_export(tiny_copy))


def test_truncated_weights_are_an_error_even_without_verification(tiny_copy):
    path = tiny_copy / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-64])
    with pytest.raises(ChecksumError, match="model.safetensors.*bytes"):
        load_model(tiny_copy)
    with pytest.raises(ExportError, match="model.safetensors.*not a readable safetensors"):
        load_model(tiny_copy, verify=False)


def test_weights_of_another_graph_name_the_keys(tiny_copy):
    other = Graph("other", (1, 8, 8))
    other.add("stem", "conv_bn_act", out=4)
    other.add("gap", "global_avg_pool")
    other.add("head", "linear", out=10)
    torch.manual_seed(0)
    save_file(dict(other.build().state_dict()), str(tiny_copy / "model.safetensors"))
    with pytest.raises(ChecksumError):
        load_model(tiny_copy)
    with pytest.raises(ExportError, match=r"missing: fc.weight.*unexpected: head\..*wrong shape: "
                                          r"stem.conv.weight \[4, 1, 3, 3\]"):
        load_model(tiny_copy, verify=False)


def test_tampered_graph_is_an_error(tiny_copy):
    path = tiny_copy / "graph.yaml"
    path.write_text(path.read_text().replace("out: 10", "out: 11"))
    with pytest.raises(ChecksumError, match="graph.yaml"):
        load_model(tiny_copy)
    # the manifest's checksum updated too (a careless edit, or a partial forgery): the structural hash still differs
    manifest = json.loads((tiny_copy / "manifest.json").read_text())
    data = path.read_bytes()
    manifest["files"]["graph.yaml"] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (tiny_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ExportError, match="graph.yaml: structural hash"):
        load_model(tiny_copy)
    assert any("structural hash" in p for p in verify_export(tiny_copy))


@pytest.mark.parametrize("tamper, error, pattern", [
    (lambda m: m["files"]["model.safetensors"].update(sha256="0" * 64), ChecksumError, "model.safetensors.*sha256"),
    (lambda m: m["files"]["model.safetensors"].update(bytes=1), ChecksumError, "model.safetensors.*bytes"),
    (lambda m: m["files"].pop("model.safetensors"), ExportError, "lists no model.safetensors"),
    (lambda m: m["files"].update({"../model.bin": m["files"]["model.ts"]}), ExportError, "not a plain name"),
    (lambda m: m.update(format_version=99), ExportError, "upgrade nascore"),
    (lambda m: m.update(format="something-else"), ExportError, "not a nascore export manifest"),
])
def test_tampered_manifest_is_an_error(tiny_copy, tamper, error, pattern):
    path = tiny_copy / "manifest.json"
    manifest = json.loads(path.read_text())
    tamper(manifest)
    path.write_text(json.dumps(manifest))
    with pytest.raises(error, match=pattern):
        load_model(tiny_copy)
    assert verify_export(tiny_copy)


def test_missing_or_corrupt_manifest_names_the_path(tiny_copy):
    manifest = tiny_copy / "manifest.json"
    manifest.write_text('{"format": "nascore-export", ')
    with pytest.raises(ExportError, match=f"{manifest}.*not valid JSON"):
        load_model(tiny_copy)
    manifest.write_text("[1, 2]")
    with pytest.raises(ExportError, match="expected a JSON object"):
        load_model(tiny_copy)
    manifest.unlink()
    with pytest.raises(ExportError, match=f"{manifest}: file not found"):
        load_model(tiny_copy)
    assert verify_export(tiny_copy) and "file not found" in verify_export(tiny_copy)[0]


def test_missing_format_file_is_named_by_verify_and_not_needed_by_load_model(tiny_copy):
    (tiny_copy / "model.onnx").unlink()
    assert any("model.onnx: listed in manifest.json but missing" in p for p in verify_export(tiny_copy))
    assert load_model(tiny_copy) is not None          # it reads graph.yaml and model.safetensors only
    path = tiny_copy / "manifest.json"                # likewise a listed file that never existed
    manifest = json.loads(path.read_text())
    manifest["files"]["extra.bin"] = manifest["files"]["model.ts"]
    path.write_text(json.dumps(manifest))
    assert any("extra.bin: listed in manifest.json but missing" in p for p in verify_export(tiny_copy))
    assert load_model(tiny_copy) is not None


# -- atomic writing: existing targets, overwrite, crashes -----------------------------------------------------------


def test_existing_export_is_kept_without_overwrite(tiny, tiny_copy):
    yaml_path, _ = tiny
    before = digest_tree(tiny_copy)
    with pytest.raises(ExportError, match="already exists.*overwrite=True"):
        export(yaml_path, tiny_copy, formats=["weights"])
    assert digest_tree(tiny_copy) == before


def test_overwrite_replaces_a_complete_export_and_leaves_nothing_behind(tiny, tiny_copy):
    yaml_path, _ = tiny
    export(yaml_path, tiny_copy, formats=["weights"], overwrite=True)
    assert sorted(p.name for p in tiny_copy.iterdir()) == ["graph.yaml", "manifest.json", "model.safetensors"]
    assert list(read_manifest(tiny_copy)["formats"]) == ["weights"] and verify_export(tiny_copy) == []
    assert leftovers(tiny_copy.parent, tiny_copy.name) == []


def test_overwrite_never_replaces_a_folder_that_is_not_an_export(tiny, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ExportError, match="not a nascore export; not replacing it"):
        export(tiny[0], precious, formats=["weights"], overwrite=True)
    assert (precious / "thesis.tex").read_text() == "years of work"


def _crash_in_torch_export_save(monkeypatch):
    def save(program, f, **kwargs):      # half a file, then the disk is full
        Path(f).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch.export, "save", save)


def test_crash_mid_export_leaves_no_output_and_no_temp(tiny, tmp_path, monkeypatch):
    _crash_in_torch_export_save(monkeypatch)
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="format torch_export: OSError.*No space left"):
        export(tiny[0], out, formats=["torchscript", "torch_export"])
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_overwrite_keeps_the_old_export(tiny, tiny_copy, monkeypatch):
    _crash_in_torch_export_save(monkeypatch)
    before = digest_tree(tiny_copy)
    with pytest.raises(ExportError, match="No space left"):
        export(tiny[0], tiny_copy, formats=["torch_export"], overwrite=True)
    assert digest_tree(tiny_copy) == before and verify_export(tiny_copy) == []
    assert leftovers(tiny_copy.parent, tiny_copy.name) == []


class _Interrupting:
    """A plugin whose format is interrupted (Ctrl-C) after writing part of its file."""

    @hookimpl
    def nascore_exporters(self):
        def write(model, example, path, graph):
            path.write_bytes(b"partial")
            raise KeyboardInterrupt

        return [ExporterSpec("interrupted", "model.bin", write, doc="test")]


def test_interrupted_export_leaves_no_output_and_no_temp(tiny, tmp_path):
    from nascore.ext.manager import register_plugin, unregister_plugin

    register_plugin(_Interrupting(), "test-interrupting")
    try:
        out = tmp_path / "out"
        with pytest.raises(KeyboardInterrupt):
            export(tiny[0], out, formats=["interrupted"])
        assert list(tmp_path.iterdir()) == []
    finally:
        unregister_plugin("test-interrupting")


class _NeedsMissingModule:
    @hookimpl
    def nascore_exporters(self):
        return [ExporterSpec("exotic", "model.exo", lambda *a: {}, requires=("nascore_no_such_module_xyz",),
                             install="pip install nascore-exotic")]


def test_formats_with_missing_requirements_say_what_to_install(tiny, tmp_path):
    from nascore.ext.manager import register_plugin, unregister_plugin

    register_plugin(_NeedsMissingModule(), "test-exotic")
    try:
        with pytest.raises(ExportError, match=r"format exotic needs nascore_no_such_module_xyz: `pip install "
                                              r"nascore-exotic`"):
            export(tiny[0], tmp_path / "a", formats="weights,exotic")
        assert not (tmp_path / "a").exists()
        assert not EXPORTERS.get("exotic").available
    finally:
        unregister_plugin("test-exotic")
    assert EXPORTERS.get("onnx").install_hint == "pip install nascore[onnx]"


def test_default_formats_that_cannot_be_written_are_named_with_their_install_command(tiny, tmp_path):
    """Without --format, a format whose modules are missing is left out, but never silently: the manifest and
    the CLI say which and what to install."""
    from click.testing import CliRunner

    from nascore.cli import main
    from nascore.ext.manager import register_plugin, unregister_plugin

    register_plugin(_NeedsMissingModule(), "test-exotic")
    try:
        manifest = read_manifest(export(tiny[0], tmp_path / "a", formats=None))
        assert "model.exo" not in manifest["files"]
        assert manifest["skipped_formats"] == {
            "exotic": "needs nascore_no_such_module_xyz: `pip install nascore-exotic`"}
        result = CliRunner().invoke(main, ["export", str(tiny[0]), "--out", str(tmp_path / "b")])
        assert result.exit_code == 0, result.output
        assert "skipped format exotic" in result.output and "pip install nascore-exotic" in result.output
        result = CliRunner().invoke(main, ["export", str(tiny[0]), "--out", str(tmp_path / "c"), "--format",
                                           "exotic"])
        assert result.exit_code != 0 and "pip install nascore-exotic" in result.output
        assert not (tmp_path / "c").exists()
    finally:
        unregister_plugin("test-exotic")


def test_bad_arguments_are_clear_errors(tiny, tmp_path):
    yaml_path = tiny[0]
    with pytest.raises(ExportError, match="unknown exporter 'tflite'"):
        export(yaml_path, tmp_path / "a", formats=["tflite"])
    with pytest.raises(ExportError, match="no such file or directory"):
        export(tmp_path / "nowhere.yaml", tmp_path / "a")
    with pytest.raises(ExportError, match="trial= applies to a run directory"):
        export(yaml_path, tmp_path / "a", trial=3)
    with pytest.raises(ExportError, match="has 2 dimensions"):
        export(yaml_path, tmp_path / "a", input_shape=(8, 8))
    with pytest.raises(ExportError, match="expected CxHxW"):
        export(yaml_path, tmp_path / "a", input_shape="1xbig")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "graph.yaml").write_text(yaml_path.read_text())
    with pytest.raises(ExportError, match="no model.safetensors"):
        export(tmp_path / "half", tmp_path / "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half"]


def test_input_override_must_fit_trained_weights(tmp_path):
    graph = tiny_graph()
    folder = write_folder(tmp_path / "trained", graph, trained_like(graph))
    with pytest.raises(ExportError, match=r"wrong shape: stem.conv.weight \[8, 1, 3, 3\] \(expected \[8, 3, 3, 3\]"):
        export(folder, tmp_path / "out", formats=["weights"], input_shape="3x8x8")
    out = export(folder, tmp_path / "out", formats=["weights"], input_shape="1x16x16")
    m = read_manifest(out)
    assert m["input_shape"] == [1, 16, 16] and m["source"]["original_input_shape"] == [1, 8, 8]
    assert Graph.load(out / "graph.yaml").input_shape == (1, 16, 16)
    assert outputs(load_model(out), torch.randn(2, 1, 16, 16))[0].shape == (2, 10)


def test_reexport_checks_and_keeps_the_provenance(tmp_path):
    graph = tiny_graph()
    folder = write_folder(tmp_path / "trained", graph, trained_like(graph))
    (folder / "metrics.json").write_text(json.dumps({"test_acc": 0.5}))
    first = export(folder, tmp_path / "first", formats=["weights"])
    second = export(first, tmp_path / "second", formats=["torchscript"])
    m = read_manifest(second)
    assert m["metrics"] == {"test_acc": 0.5} and m["source"]["reexported_from"] == str(first)
    _flip_byte(first / "model.safetensors")
    with pytest.raises(ExportError, match="fails verification.*model.safetensors"):
        export(first, tmp_path / "third")


# -- run directories ------------------------------------------------------------------------------------------------


def _hand_made_run(tmp_path: Path, objectives: list[str]) -> Path:
    """A run directory written the way the runner writes one, without a search: two trials, no study."""
    from nascore.nas.config import SearchConfig
    from nascore.nas.rundir import RunDir
    from nascore.nas.space import SearchSpace

    run = RunDir.create(tmp_path / "runs", "handmade", SearchSpace.load(SPACES / "mbconv.yaml"),
                        SearchConfig(objectives=objectives))
    graph = tiny_graph()
    for number, seed in ((1, 1), (2, 2)):
        write_folder(run.trial_dir(number), graph, trained_like(graph, seed))
    run.trial_dir(3).mkdir()
    graph.save(run.trial_dir(3) / "graph.yaml")           # a trial that never completed: no weights
    entries = [{"trial": 1, "values": [0.5, 100.0][:len(objectives)], "params": {"stage1/expand": 1}},
               {"trial": 2, "values": [0.9, 300.0][:len(objectives)], "params": {"stage1/expand": 6}}]
    key = "best" if len(objectives) == 1 else "pareto"
    run.publish(key, [e["trial"] for e in entries] if key == "pareto" else [2])
    run.write_summary({"run": run.name, "space": "mbconv", "objectives": objectives,
                       key: entries if key == "pareto" else entries[1:]})
    return run.path


def test_multi_objective_run_exports_the_best_first_objective_or_a_chosen_trial(tmp_path):
    run = _hand_made_run(tmp_path, ["val_acc", "params"])
    out = export(run, tmp_path / "best", formats=["weights"])
    m = read_manifest(out)
    assert m["source"]["trial"] == 2 and m["source"]["kind"] == "run" and m["source"]["space"] == "mbconv"
    assert m["metrics"] == {"val_acc": 0.9, "params": 300.0} and m["source"]["sample"] == {"stage1/expand": 6}
    assert m["weights"] == "trained"
    expected = load_file(str(run / "pareto" / "trial_00002" / "model.safetensors"))
    assert all(torch.equal(v, expected[k]) for k, v in load_file(str(out / "model.safetensors")).items())
    m1 = read_manifest(export(run, tmp_path / "t1", formats=["weights"], trial=1))
    assert m1["source"]["trial"] == 1 and m1["metrics"] == {"val_acc": 0.5, "params": 100.0}
    with pytest.raises(ExportError, match="trial 3 has no weights.*did not complete"):
        export(run, tmp_path / "t3", trial=3)
    with pytest.raises(ExportError, match="has no trial 7"):
        export(run, tmp_path / "t7", trial=7)
    # a folder inside the run is recognised as such: its metrics come along
    inside = read_manifest(export(run / "pareto" / "trial_00001", tmp_path / "p1", formats=["weights"]))
    assert inside["source"]["trial"] == 1 and inside["metrics"]["val_acc"] == 0.5
    assert read_manifest(export(run / "trials" / "00002", tmp_path / "p2", formats=["weights"]))["source"]["trial"] == 2


def test_run_without_a_finished_trial_is_a_clear_error(tmp_path):
    from nascore.nas.config import SearchConfig
    from nascore.nas.rundir import RunDir
    from nascore.nas.space import SearchSpace

    run = RunDir.create(tmp_path, "empty", SearchSpace.load(SPACES / "mbconv.yaml"), SearchConfig())
    with pytest.raises(ExportError, match="no finished trial yet"):
        export(run.path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_search_exports_its_best_with_metrics(local_ray, tmp_path):
    from nascore.nas.driver import search

    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=1, epochs=1, workers=1, pruner="none",
                 train={"batch_size": 64, "lr": 0.1}, progress=None)
    summary = json.loads((run / "summary.json").read_text())
    best = summary["best"][0]
    out = export(run, tmp_path / "exported", formats=["weights", "torchscript"])
    m = read_manifest(out)
    assert m["source"]["run"] == run.name and m["source"]["trial"] == best["trial"]
    assert m["source"]["space"] == "mbconv" and m["source"]["data"] == "digits"
    assert m["source"]["sample"] == best["params"]
    assert m["metrics"]["val_acc"] == pytest.approx(best["values"][0])
    assert 0.0 <= m["metrics"]["test_acc"] <= 1.0 and m["metrics"]["params"] == m["graph"]["params"]
    assert m["metrics"]["macs"] == m["graph"]["macs"] and m["metrics"]["epochs"] == 1
    assert m["graph"]["hash"] == Graph.load(run / "best" / "graph.yaml").structural_hash()
    model = load_model(out)
    expected = Graph.load(run / "best" / "graph.yaml").build().eval()
    expected.load_state_dict(load_file(str(run / "best" / "model.safetensors")))
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(outputs(model, x)[0], outputs(expected, x)[0])
    assert read_manifest(export(run, tmp_path / "by_trial", formats=["weights"], trial=best["trial"]))[
        "metrics"] == m["metrics"]


# -- the zoo through ONNX -------------------------------------------------------------------------------------------


def test_mobilenet_v2_passes_onnx_verification(tmp_path):
    out = export(GRAPHS / "mobilenet_v2.yaml", tmp_path / "mbv2", formats=["onnx"], input_shape=(3, 64, 64))
    m = read_manifest(out)
    assert set(m["formats"]) == {"weights", "onnx"}
    info = m["formats"]["onnx"]
    assert info["batch"] == "dynamic" and info["max_abs_error"] <= ATOL
    assert info["output_names"] == ["fc"] and info["input_names"] == ["input"]
    assert m["input_shape"] == [3, 64, 64] and m["source"]["original_input_shape"] == [3, 224, 224]
    assert m["graph"]["params"] == 3_504_872 and m["outputs"][0]["shape"] == ["batch", 1000]
    assert verify_export(out) == []


def test_onnx_mismatch_is_an_export_error(tiny, tmp_path, monkeypatch):
    import nascore_plugins.exporters as builtin

    real = builtin._check

    def strict(model, run, example, what, dynamic=True):
        if what.startswith("ONNX"):               # a runtime that disagrees with PyTorch by 1e-2
            return real(model, lambda x: [t + 1e-2 for t in run(x)], example, what, dynamic)
        return real(model, run, example, what, dynamic)

    monkeypatch.setattr(builtin, "_check", strict)
    with pytest.raises(ExportError, match=r"format onnx: ONNX \(onnxruntime\): output 0 differs from PyTorch"):
        export(tiny[0], tmp_path / "out", formats=["onnx"])
    assert list(tmp_path.iterdir()) == []


def test_errors_are_nascore_errors():
    assert issubclass(ChecksumError, ExportError) and issubclass(ExportError, NascoreError)


def test_compare_outputs_tolerance_shapes_and_non_finite_values():
    from nascore.exporting.spec import compare_outputs

    a = torch.tensor([1.0, 2.0, float("nan"), float("inf")])
    assert compare_outputs([a], [a + 5e-5], ATOL, RTOL, "x") == pytest.approx(5e-5, rel=2e-2)
    with pytest.raises(ExportError, match="x: output 0 differs from PyTorch by up to 0.01"):
        compare_outputs([a], [a + 1e-2], ATOL, RTOL, "x")
    with pytest.raises(ExportError, match="non-finite"):
        compare_outputs([a], [torch.tensor([1.0, 2.0, 3.0, float("inf")])], ATOL, RTOL, "x")
    with pytest.raises(ExportError, match="non-finite"):
        compare_outputs([a], [torch.tensor([1.0, 2.0, float("nan"), -float("inf")])], ATOL, RTOL, "x")
    with pytest.raises(ExportError, match=r"shape \[2\], expected \[4\]"):
        compare_outputs([a], [a[:2]], ATOL, RTOL, "x")
    with pytest.raises(ExportError, match="1 outputs, expected 2"):
        compare_outputs([a, a], [a], ATOL, RTOL, "x")


def test_multi_output_graph_keeps_every_output(tmp_path):
    out = export(GRAPHS / "resnet18_fpn_pan.yaml", tmp_path / "fpn", formats=["torchscript", "torch_export"],
                 input_shape=(3, 64, 64))
    m = read_manifest(out)
    assert [(o["name"], o["ref"], o["shape"]) for o in m["outputs"]] == [
        ("pan_n0", "pan:n0", ["batch", 128, 8, 8]), ("pan_n1", "pan:n1", ["batch", 128, 4, 4]),
        ("pan_n2", "pan:n2", ["batch", 128, 2, 2])]
    assert all(m["formats"][f]["batch"] == "dynamic" for f in ("torchscript", "torch_export"))
    ys = outputs(load_model(out), torch.randn(1, 3, 64, 64))
    assert [tuple(y.shape) for y in ys] == [(1, 128, 8, 8), (1, 128, 4, 4), (1, 128, 2, 2)]
