"""Experiment tracking: a real search's TensorBoard event files hold exactly the numbers its study holds; off, it
writes none; a tracker that raises is reported once and never fails the search."""

from __future__ import annotations

import json

import optuna
import pytest
from click.testing import CliRunner

from nascore.cli import main
from nascore.nas import tracking
from nascore.nas.driver import search
from nascore.nas.rundir import RunDir
from nascore.nas.tracking import Guarded, NullTracker, TensorBoardTracker, open_tracker
from tests.conftest import SPACES

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

FAST = {"batch_size": 32, "lr": 0.1}
TRAINER_METRICS = {"loss", "train_acc", "val_acc", "lr", "drop_path", "seconds"}   # the trainer, every epoch


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _trained(run):
    study = RunDir.open(run).load_study()
    return [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("kind") == "trained"]


@pytest.mark.slow
def test_event_files_match_the_study(local_ray, tmp_path):
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=2, epochs=2, workers=2, train=FAST,
                 pruner="none", progress=None)
    trained = _trained(run)
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    for trial in trained:
        logged = _scalars(run / "tensorboard" / f"trial_{trial.number:05d}")
        history = trial.user_attrs["history"]
        assert [h["epoch"] for h in history] == [1, 2]
        assert TRAINER_METRICS <= set(history[0])
        for key in set(history[0]) - {"epoch"}:
            assert logged[key] == [(h["epoch"], pytest.approx(h[key], rel=1e-6)) for h in history], key
        assert logged["final/test_acc"] == [(2, pytest.approx(trial.user_attrs["test_acc"], rel=1e-6))]
        assert logged["final/params"] == [(2, pytest.approx(trial.user_attrs["params"], rel=1e-6))]
    best = _scalars(run / "tensorboard" / "search")["best/val_acc"]
    assert [step for step, _ in best] == sorted({step for step, _ in best}) and best[-1][0] == 2
    values = [v for _, v in best]
    assert values == sorted(values)                                    # the best so far never gets worse
    summary = json.loads((run / "summary.json").read_text())
    assert best[-1][1] == pytest.approx(summary["best"][0]["values"][0], rel=1e-6)


@pytest.mark.slow
def test_no_tensorboard_writes_none(local_ray, tmp_path):
    result = CliRunner().invoke(main, ["search", str(SPACES / "mbconv.yaml"), "--runs", str(tmp_path), "--trials",
                                       "1", "--epochs", "1", "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    run = next(p for p in tmp_path.iterdir() if p.name.startswith("mbconv-"))
    assert len(_trained(run)) == 1
    assert not (run / "tensorboard").exists()
    assert RunDir.open(run).config().tensorboard is False


@pytest.mark.slow
def test_a_raising_tracker_is_reported_once_and_the_search_goes_on(local_ray, tmp_path, monkeypatch):
    def broken(self, number, epoch, metrics):
        raise OSError("No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "trial_epoch", broken)
    lines: list[str] = []
    run = search(SPACES / "mbconv.yaml", runs_root=tmp_path, trials=2, epochs=1, workers=2, train=FAST,
                 progress=lines.append)
    trained = _trained(run)
    assert len(trained) == 2 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trained)
    assert json.loads((run / "summary.json").read_text())["state"] == "finished"
    off = [line for line in lines if line.startswith("TensorBoard logging off")]
    assert len(off) == 1 and "OSError" in off[0], lines


def test_resume_appends_to_the_same_folders(tmp_path):
    first = TensorBoardTracker(tmp_path)
    first.trial_epoch(3, 1, {"epoch": 1, "val_acc": 0.5, "lr": 0.1, "nan_guard": True})
    first.close()                                                      # interrupted, no trial_end
    second = TensorBoardTracker(tmp_path)
    second.trial_epoch(3, 2, {"epoch": 2, "val_acc": 0.75, "lr": 0.05})
    second.trial_end(3, "complete", {"test_acc": 0.7})
    second.search_progress(1, {"val_acc": 0.75})
    second.search_progress(1, {"val_acc": 0.75})                       # nothing new ended: not written twice
    second.close()
    logged = _scalars(tmp_path / "trial_00003")
    assert logged["val_acc"] == [(1, 0.5), (2, 0.75)]
    assert set(logged) == {"val_acc", "lr", "final/test_acc"}          # not the epoch, not a bool
    assert _scalars(tmp_path / "search") == {"best/val_acc": [(1, 0.75)]}


def test_without_the_package_one_line_says_so(tmp_path, monkeypatch):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(tracking.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    lines: list[str] = []
    assert isinstance(open_tracker(True, tmp_path / "tb", lines.append), NullTracker)
    assert lines == [tracking.MISSING] and "pip install tensorboard" in lines[0]
    assert isinstance(open_tracker(False, tmp_path / "tb", lines.append), NullTracker) and len(lines) == 1
    assert not (tmp_path / "tb").exists()


def test_guarded_turns_off_after_the_first_error():
    calls: list[str] = []

    class Flaky(NullTracker):
        def trial_end(self, number, state, metrics):
            calls.append("end")
            raise RuntimeError("writer thread died\nsecond line")

        def close(self):
            calls.append("close")

    lines: list[str] = []
    guarded = Guarded(Flaky(), lines.append)
    guarded.trial_end(1, "complete", {"test_acc": 1.0})
    guarded.trial_end(2, "complete", {"test_acc": 1.0})
    guarded.close()
    assert calls == ["end", "close"]                                   # the broken one closed once, then nothing
    assert len(lines) == 1 and "RuntimeError" in lines[0] and "\n" not in lines[0]
