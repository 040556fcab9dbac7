"""The hostile new-user probe (issue 14): run identity, one-line errors where a traceback was, litter. In process
(click's CliRunner) and without Ray: a run is made by hand (its study filled like a search fills it), and every
refusal asserted here comes before a search would start Ray."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from nascore.cli import main
from nascore.errors import GraphError, NascoreError, RunError
from nascore.nas.config import SearchConfig
from nascore.nas.recovery import open_study
from nascore.nas.rundir import RUN_FILE, RunDir
from nascore.nas.space import SearchSpace
from tests.conftest import SPACES
from tests.exporting.test_export import _exporters  # noqa: F401 - the autouse fixture


def make_run(root: Path, trials: int = 2) -> Path:
    """A run directory as a search leaves it: config, space, run.json, a study of ``trials`` complete trials."""
    space = SearchSpace.load(SPACES / "mbconv.yaml")
    config = SearchConfig.merge(space.settings, {"trials": trials})
    run = RunDir.create(root, space.name, space, config)
    store = open_study(run, space, config)
    for i in range(trials):
        trial = store.study.ask()
        space.sample(trial)
        trial.set_user_attr("kind", "trained")
        store.study.tell(trial, 0.5 + i / 10)
    store.storage.engine.dispose()
    return run.path


def tree(folder: Path) -> dict[str, str]:
    """Every file's sha256, but SQLite's -wal / -shm (any reader of a WAL database may create them)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def one_line_error(result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    return result.output


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"))


@pytest.fixture
def copied(original, tmp_path) -> Path:
    """``cp -a runs/X mine/myrun``"""
    target = tmp_path / "mine" / "myrun"
    shutil.copytree(original, target, symlinks=True)
    return target


def _resume(run_path: Path) -> optuna.Study:
    """What ``search --resume`` opens (the driver's own open_study), without starting Ray."""
    run = RunDir.open(run_path)
    return open_study(run, run.space(), run.config()).study


# -- b. run identity -------------------------------------------------------------------------------------------------


def test_a_copied_or_renamed_run_is_shown_and_resumed_with_its_own_study(original, copied):
    result = cli("runs", "show", str(copied))
    assert result.exit_code == 0, result.output
    assert f"run {copied}" in result.output and "0.6" in result.output
    study = _resume(copied)
    assert study.study_name == original.name and len(study.get_trials()) == 2
    assert optuna.get_all_study_names(RunDir.open(copied).storage(RunDir.open(copied).config())) == [original.name]
    assert study.ask().number == 2                     # numbering goes on; no second study


def test_an_older_run_without_run_json_takes_its_only_study_and_records_it(original, copied):
    (copied / RUN_FILE).unlink()
    assert cli("runs", "show", str(copied)).exit_code == 0
    assert _resume(copied).study_name == original.name
    assert RunDir.open(copied).stored_study_name() == original.name


def test_a_run_whose_study_is_not_in_its_storage_is_refused(copied):
    (copied / RUN_FILE).write_text('{"format": 1, "study": "someone-else"}')
    before = tree(copied)
    assert "no study named 'someone-else'" in one_line_error(cli("runs", "show", str(copied)))
    with pytest.raises(RunError, match="no study named 'someone-else'"):
        _resume(copied)
    assert tree(copied) == before


def test_two_studies_and_no_run_json_is_ambiguous_and_refused(original, copied):
    """The state the old bug left: a resume of a renamed run made a second study named like the folder."""
    (copied / RUN_FILE).unlink()
    run = RunDir.open(copied)
    optuna.create_study(study_name="myrun", storage=run.storage(run.config()))
    assert "ambiguous" in one_line_error(cli("runs", "show", str(copied)))
    with pytest.raises(RunError, match=r"2 studies \('mbconv-.*', 'myrun'\).*ambiguous"):
        _resume(copied)


def test_a_corrupt_run_json_is_one_line(copied):
    (copied / RUN_FILE).write_text("[1, 2")
    assert "run.json is corrupt" in one_line_error(cli("runs", "show", str(copied)))


# -- c. one line where a traceback was -------------------------------------------------------------------------------


def test_a_read_only_run_directory_is_shown_without_writing(copied, monkeypatch):
    import nascore.nas.rundir as rundir

    before = tree(copied)
    assert cli("runs", "show", str(copied)).exit_code == 0       # a read-only connection: nothing written
    assert tree(copied) == before
    # the folder read-only (root ignores permissions, so the check is simulated): read from a temporary copy
    real_access = os.access
    monkeypatch.setattr(rundir.os, "access", lambda path, mode: real_access(path, mode) and not (
        mode & os.W_OK and Path(path) == copied))
    for name in ("study.db-wal", "study.db-shm"):
        (copied / name).unlink(missing_ok=True)
    before = sorted(p.name for p in copied.iterdir())
    result = cli("runs", "show", str(copied))
    assert result.exit_code == 0 and "0.6" in result.output, result.output
    assert sorted(p.name for p in copied.iterdir()) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_really_read_only_run_directory_is_shown(copied):
    for path in [copied, *copied.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        assert cli("runs", "show", str(copied)).exit_code == 0
    finally:
        for path in [copied, *copied.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)


def test_a_search_in_a_read_only_run_directory_is_one_line(copied, monkeypatch):
    run = RunDir.open(copied)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(RunError, match="cannot be written .*runs show"):
        run.lock()


@pytest.mark.parametrize("cut", [0.3, 0.6])
def test_a_truncated_study_db_is_one_line_everywhere(copied, cut):
    db = copied / "study.db"
    data = db.read_bytes()
    db.write_bytes(data[:int(len(data) * cut)])
    for name in ("study.db-wal", "study.db-shm"):
        (copied / name).unlink(missing_ok=True)
    assert "damaged" in one_line_error(cli("runs", "show", str(copied)))
    assert "damaged" in one_line_error(cli("runs", "plot", str(copied)))
    with pytest.raises(RunError, match="storage sqlite:///.*study.db"):
        _resume(copied)
    result = cli("search", "--resume", str(copied))
    one_line_error(result)


def test_a_nonsense_storage_is_one_line_and_leaves_no_run(tmp_path):
    for url in ("nonsense://x", "postgresql+nosuchdriver://u@h/db", "not a url"):
        result = cli("search", str(SPACES / "mbconv.yaml"), "--runs", str(tmp_path / "runs"), "--storage", url)
        assert f"storage {url}" in one_line_error(result)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_an_export_input_too_large_to_run_is_one_line(tmp_path):
    result = cli("export", str(Path(__file__).parents[2] / "graphs" / "mobilenet_v2.yaml"), "-o", str(tmp_path / "o"),
                 "--input", "3x16000x16000", "--format", "weights")
    assert "too large to export" in one_line_error(result) and "GiB" in result.output
    assert list(tmp_path.iterdir()) == []


def test_sigterm_during_a_search_is_handled_like_ctrl_c(tmp_path, monkeypatch):
    """ray.init installs its own SIGTERM handler (a bare sys.exit); the driver puts its own back, so SIGTERM writes
    the summary as interrupted and prints the resume hint, as Ctrl-C does."""
    import sys

    from nascore.nas import driver
    from nascore.nas.pool import ActorPool

    def ray_like_open(self):
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(signum))

    def terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.1) if hasattr(signal, "sigtimedwait") else None

    monkeypatch.setattr(ActorPool, "open", ray_like_open)
    monkeypatch.setattr(ActorPool, "close", lambda self: None)
    monkeypatch.setattr(driver.Search, "_loop", terminated)
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        driver.search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=1, tensorboard=False,
                      progress=lines.append)
    run = next(tmp_path.iterdir())
    assert RunDir.open(run).summary()["state"] == "interrupted"
    assert lines[-1] == f"interrupted: resume with `nascore search --resume {run}`"


# -- d. litter -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("args, said", [
    (["--strategy", "tpee"], "did you mean 'tpe'"),
    (["--data", "digitz"], "digitz"),
    (["--data", "cifar10", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["--evaluator", "naswott"], "naswott"),
])
def test_a_refused_search_leaves_no_run_directory(tmp_path, args, said):
    runs = tmp_path / "runs"
    result = cli("search", str(SPACES / "mbconv.yaml"), "--runs", str(runs), "--trials", "1", *args)
    assert said in one_line_error(result)
    assert not runs.exists() or [p.name for p in runs.iterdir()] == []


def test_search_export_to_an_existing_folder_fails_before_the_search(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "x").write_text("x")
    runs = tmp_path / "runs"
    result = cli("search", str(SPACES / "mbconv.yaml"), "--runs", str(runs), "--export", str(existing))
    assert "already exists" in one_line_error(result) and not runs.exists()


def test_train_export_to_an_existing_folder_fails_before_training(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "x").write_text("x")
    graph = Path(__file__).parents[2] / "graphs" / "mobilenet_v2.yaml"
    result = cli("train", str(graph), "-o", str(tmp_path / "out"), "--export", str(existing))
    assert "already exists" in one_line_error(result) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("nodes, said", [
    ("[{name: a, block: conv_bn_act, out: 8, inputs: c}, {name: b, block: conv_bn_act, out: 8},"
     " {name: c, block: conv_bn_act, out: 8}]", "node 'a': its inputs form a cycle: a -> c -> b -> a"),
    ("[{name: a, block: conv_bn_act, out: 8, inputs: a}]", "node 'a': its inputs form a cycle: a -> a"),
    ("[{name: a, block: conv_bn_act, out: 8, inputs: [input, b]}, {name: b, block: conv_bn_act, out: 8,"
     " inputs: input}]", "node 'a': takes input from 'b', which is defined later"),
    ("[{name: s, block: conv_bn_act, out: 8, repeat: 2, inputs: t}, {name: t, block: conv_bn_act, out: 8}]",
     "node 's': its inputs form a cycle: s -> t -> s"),
])
def test_a_cycle_in_a_document_is_reported_as_a_cycle(tmp_path, nodes, said):
    path = tmp_path / "g.yaml"
    path.write_text(f"input: [1, 8, 8]\nnodes: {nodes}\n")
    from nascore import Graph

    with pytest.raises(GraphError) as info:
        Graph.load(path)
    assert said in str(info.value) and "unknown node" not in str(info.value)
    assert said in one_line_error(cli("graph", "info", str(path)))


def test_an_unknown_input_is_still_an_unknown_node(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("input: [1, 8, 8]\nnodes: [{name: a, block: conv_bn_act, out: 8, inputs: nowhere}]\n")
    with pytest.raises(NascoreError, match="unknown node 'nowhere'"):
        from nascore import Graph

        Graph.load(path)


# -- e. half-truths --------------------------------------------------------------------------------------------------


@pytest.fixture
def exported(tmp_path) -> Path:
    from nascore.exporting.package import export
    from tests.exporting.test_export import tiny_graph

    tiny_graph().save(tmp_path / "tiny.yaml")
    return export(tmp_path / "tiny.yaml", tmp_path / "export", formats=["weights", "torchscript"])


def test_verify_says_what_it_proves_and_reports_extra_files(exported):
    result = cli("verify", str(exported))
    assert result.exit_code == 0
    assert "sha256" in result.output and "nothing else is in the folder" in result.output
    assert "manifest.json itself" in result.output and "not authorship" in result.output
    (exported / "notes.txt").write_text("mine")
    result = cli("verify", str(exported))
    assert result.exit_code == 1 and "notes.txt: not listed in manifest.json" in result.output


def test_load_model_does_not_need_the_formats_it_does_not_read(exported):
    from nascore.exporting.verify import load_model

    (exported / "model.ts").unlink()
    assert load_model(exported) is not None
    assert "model.ts: listed in manifest.json but missing" in cli("verify", str(exported)).output
