"""The hostile new-user probe (issue 14), data destroyed: nascore replaces or overwrites only what it can prove it
wrote. ``export --overwrite`` deletes a folder only when it is empty or an intact nascore export (a valid manifest,
exactly the files it lists, each with its sha256); ``train -o DIR`` writes only into a folder that is new, empty or
marked as nascore's own. Everything else is a one-line error naming the folder and the first foreign file, and
nothing is touched."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nascore.cli import main
from nascore.errors import ExportError, RunError
from nascore.exporting.package import export
from nascore.exporting.verify import verify_export
from nascore.training.checkpointed import MARK
from nascore.training.retrain import train_graph
from tests.exporting.test_export import _exporters, tiny_graph  # noqa: F401 - the autouse fixture


def tree(folder: Path) -> dict[str, str]:
    """Every entry below ``folder`` with its content's sha256 (folders and links marked)."""
    found = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        found[rel] = ("link" if p.is_symlink() else "dir" if p.is_dir()
                      else hashlib.sha256(p.read_bytes()).hexdigest())
    return found


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("probe") / "tiny.yaml"
    tiny_graph().save(path)
    return path


@pytest.fixture
def good_export(graph_file, tmp_path) -> Path:
    return export(graph_file, tmp_path / "export", formats=["weights"])


# -- export --overwrite ----------------------------------------------------------------------------------------------


def test_the_probe_reproduction_a_user_folder_with_a_manifest_is_not_deleted(graph_file, tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "notes.txt").write_text("notes\n")
    (d / "manifest.json").write_text("{}\n")
    before = tree(d)
    result = CliRunner().invoke(main, ["export", str(graph_file), "-o", str(d), "--overwrite", "--format", "weights"])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "error:" in result.output
    assert str(d) in result.output and "'notes.txt'" in result.output and "not replacing it" in result.output
    assert tree(d) == before
    assert [p.name for p in tmp_path.iterdir()] == ["d"]          # no temporaries left beside it


def _add_file(folder: Path) -> str:
    (folder / "notes.txt").write_text("mine")
    return "notes.txt"


def _add_nested(folder: Path) -> str:
    (folder / "sub").mkdir()
    (folder / "sub" / "data.bin").write_bytes(b"\0" * 10)
    return "sub"


def _add_empty_dir(folder: Path) -> str:
    (folder / "keep").mkdir()
    return "keep"


def _add_hidden(folder: Path) -> str:
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return ".git"


def _add_link(folder: Path) -> str:
    (folder / "elsewhere").symlink_to(folder.parent)
    return "elsewhere"


def _edit_listed(folder: Path) -> str:
    (folder / "graph.yaml").write_text((folder / "graph.yaml").read_text() + "# my comment\n")
    return "graph.yaml"


def _same_size_edit(folder: Path) -> str:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (folder / "model.safetensors").write_bytes(bytes(data))
    return "model.safetensors"


def _replace_listed_by_link(folder: Path) -> str:
    target = folder.parent / "elsewhere.yaml"
    shutil.copy(folder / "graph.yaml", target)
    (folder / "graph.yaml").unlink()
    (folder / "graph.yaml").symlink_to(target)
    return "graph.yaml"


def _foreign_manifest(folder: Path) -> str:
    (folder / "manifest.json").write_text(json.dumps({"format": "mine"}))
    return "graph.yaml"


@pytest.mark.parametrize("spoil", [_add_file, _add_nested, _add_empty_dir, _add_hidden, _add_link, _edit_listed,
                                   _same_size_edit, _replace_listed_by_link, _foreign_manifest])
def test_overwrite_refuses_any_folder_nascore_cannot_prove_it_wrote(graph_file, good_export, spoil):
    first = spoil(good_export)
    before = tree(good_export)
    with pytest.raises(ExportError) as info:
        export(graph_file, good_export, formats=["weights"], overwrite=True)
    message = str(info.value)
    assert message.startswith(f"{good_export}: holds {first!r}") and "not replacing" in message
    assert "\n" not in message
    assert tree(good_export) == before
    assert [p.name for p in good_export.parent.iterdir() if p.name.startswith(".")] == []


def test_overwrite_replaces_an_intact_export_and_an_empty_folder(graph_file, good_export, tmp_path):
    assert export(graph_file, good_export, formats=["weights"], overwrite=True) == good_export
    assert verify_export(good_export) == []
    empty = tmp_path / "empty"
    empty.mkdir()
    export(graph_file, empty, formats=["weights"], overwrite=True)
    assert verify_export(empty) == []


def test_a_file_added_while_the_export_is_written_is_not_deleted(graph_file, good_export, monkeypatch):
    """The proof is repeated on the folder set aside, after the rename: nothing added since the first check is
    lost (atomic_dir's ``replace`` check)."""
    import nascore.exporting.package as package

    real = package._write_format

    def write_then_user_saves(spec, folder, *args):
        (good_export / "late.txt").write_text("saved while nascore worked")
        return real(spec, folder, *args)

    monkeypatch.setattr(package, "_write_format", write_then_user_saves)
    with pytest.raises(ExportError, match="holds 'late.txt'"):
        export(graph_file, good_export, formats=["weights"], overwrite=True)
    assert (good_export / "late.txt").read_text() == "saved while nascore worked"
    assert [p.name for p in good_export.parent.iterdir() if p.name.startswith(".")] == []


def test_atomic_dir_puts_the_old_folder_back_when_its_check_refuses(tmp_path):
    from nascore.io.atomic import atomic_dir

    target = tmp_path / "t"
    target.mkdir()
    (target / "keep.txt").write_text("keep")

    def refuse(old: Path) -> None:
        assert (old / "keep.txt").is_file()
        raise ExportError("refused")

    with pytest.raises(ExportError, match="refused"):
        with atomic_dir(target, replace=refuse) as tmp:
            (tmp / "new.txt").write_text("new")
    assert tree(target) == {"keep.txt": hashlib.sha256(b"keep").hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["t"]


# -- train -o DIR ----------------------------------------------------------------------------------------------------

TRAIN = dict(batch_size=64, lr=0.2, threads=1)


def retrain(graph_file: Path, out: Path, **kw):
    return train_graph(graph_file, out, train=TRAIN, device="cpu", progress=None, **{"epochs": 1, **kw})


@pytest.mark.parametrize("name", ["graph.yaml", "metrics.json", "notes.txt", "checkpoint.pt"])
@pytest.mark.parametrize("resume", [True, False])
def test_train_never_writes_into_a_folder_holding_a_users_files(graph_file, tmp_path, name, resume):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("the user's own\n")
    before = tree(out)
    with pytest.raises(RunError) as info:
        retrain(graph_file, out, resume=resume)
    message = str(info.value)
    assert message.startswith(f"{out}: is not empty and not a nascore retrain output folder (it holds {name!r}")
    assert tree(out) == before


def test_train_cli_refuses_with_one_line(graph_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "graph.yaml").write_text("my graph\n")
    result = CliRunner().invoke(main, ["train", str(graph_file), "-o", str(out), "--epochs", "1", "--device", "cpu"])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "'graph.yaml'" in result.output
    assert (out / "graph.yaml").read_text() == "my graph\n"


def test_train_writes_into_new_empty_and_its_own_folders(graph_file, tmp_path):
    new = tmp_path / "new"
    retrain(graph_file, new)
    assert json.loads((new / MARK).read_text())["kind"] == "retrain"
    again = retrain(graph_file, new)                               # its own folder: resumes (reports)
    assert again["resumed_from"] == 1
    retrain(graph_file, new, resume=False)                         # its own folder: may start afresh
    empty = tmp_path / "empty"
    empty.mkdir()
    retrain(graph_file, empty)
    assert (empty / "metrics.json").is_file()


def test_a_folder_of_an_older_nascore_without_the_mark_is_still_its_own(graph_file, tmp_path):
    out = tmp_path / "old"
    retrain(graph_file, out)
    (out / MARK).unlink()                                          # as an older nascore left it
    assert retrain(graph_file, out)["resumed_from"] == 1
    assert (out / MARK).is_file()


def test_a_folder_killed_in_its_first_epoch_is_still_its_own(graph_file, tmp_path):
    out = tmp_path / "out"

    def crash(line: str) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_graph(graph_file, out, epochs=1, train=TRAIN, device="cpu", progress=crash)
    assert (out / MARK).is_file() and not (out / "checkpoint.pt").exists()
    assert retrain(graph_file, out)["epochs_done"] == 1


def test_a_supernet_folder_is_not_a_retrain_folder(graph_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MARK).write_text(json.dumps({"kind": "supernet"}))
    with pytest.raises(RunError, match="another kind of nascore run"):
        retrain(graph_file, out)


def test_a_bad_data_set_creates_no_output_folder(graph_file, tmp_path):
    from nascore.errors import NascoreError

    with pytest.raises(NascoreError):
        retrain(graph_file, tmp_path / "out", data="no-such-data")
    assert not (tmp_path / "out").exists()
