"""The trial book's rules on their own (no Ray, no torch): kinds, counts, budget, de-duplication, best so far and the
progress line; the study's crash recovery on a real Optuna storage; and the one Optuna private the search reads."""

from __future__ import annotations

import optuna
import pytest

from nascore.nas.book import (
    COUNT_KEYS,
    Budget,
    Dedup,
    Kind,
    State,
    TrialBook,
    TrialRecord,
    Verdict,
    best,
    budget_used,
    counts,
    status_line,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def rec(number, state="COMPLETE", kind="trained", values=None, digest="", params=None):
    return TrialRecord(number, State[state], Kind.of(kind), values, params or {}, digest)


# -- kinds and counts ------------------------------------------------------------------------------------------------


def test_kinds_are_stored_by_their_plain_value():
    assert [k.value for k in Kind] == ["trained", "failed", "duplicate", "invalid", "rejected", "interrupted",
                                      "scored"]
    assert Kind.of("duplicate") is Kind.DUPLICATE
    assert Kind.of(None) is None and Kind.of("something else") is None and Kind.of(["trained"]) is None


def test_counts_by_kind_then_by_state_in_a_fixed_order():
    records = [rec(0, values=[0.9]), rec(1, "PRUNED"), rec(2, "FAIL", "failed"), rec(3, "RUNNING"),
               rec(4, "FAIL", "rejected"), rec(5, "FAIL", "invalid"), rec(6, "COMPLETE", "duplicate", [0.9]),
               rec(7, "FAIL", "interrupted"), rec(8, "WAITING", None), rec(9, "RUNNING", None),
               rec(10, "FAIL", "duplicate"), rec(11, "FAIL", "scored")]
    tally = counts(records)
    assert list(tally) == list(COUNT_KEYS)
    assert tally == {"complete": 1, "pruned": 1, "failed": 1, "running": 2, "rejected": 1, "invalid": 1,
                     "duplicate": 2, "interrupted": 1, "scored": 1}


def test_only_trained_and_failed_trials_use_the_budget():
    records = [rec(0), rec(1, "PRUNED"), rec(2, "FAIL", "failed"), rec(3, "RUNNING"), rec(4, "FAIL", "rejected"),
               rec(5, "COMPLETE", "duplicate"), rec(6, "FAIL", "interrupted"), rec(7, "RUNNING", None)]
    assert budget_used(records) == 3      # the running one counts when it ends (has_room counts it in flight)


def test_a_trial_lost_with_its_worker_and_queued_again_leaves_its_place_to_the_retry():
    from dataclasses import replace

    lost = replace(rec(0, "FAIL", "failed"), requeued=True)
    assert budget_used([lost, rec(1, "WAITING", None)]) == 0
    assert budget_used([lost, rec(1)]) == 1                                   # the retry, once it ran


def test_budget_room_and_the_limit_on_samples_that_train_nothing():
    budget = Budget(trials=3, used=1)
    assert budget.has_room(1) and not budget.has_room(2)
    budget.spend()
    assert budget.used == 2 and not budget.has_room(1)
    assert Budget(trials=3).miss_limit == 200 and Budget(trials=50).miss_limit == 1000
    small = Budget(trials=1)
    assert not any(small.missed() for _ in range(199))
    small.launched()                       # a trial that trains resets the run of misses
    assert not any(small.missed() for _ in range(199)) and small.missed()


# -- de-duplication --------------------------------------------------------------------------------------------------


def test_an_architecture_trains_once_and_its_duplicates_wait_then_copy():
    book = TrialBook()
    assert book.verdict("a") == Verdict(Dedup.TRAIN)
    book.start("a", 3)
    assert book.verdict("a") == Verdict(Dedup.WAIT, 3)
    book.wait("a", "trial 4")
    book.wait("a", "trial 5")
    book.completed("a", 3)
    assert book.settle("a") == ["trial 4", "trial 5"]
    assert book.settle("a") == []                        # settled once
    assert book.verdict("a") == Verdict(Dedup.COPY, 3) and book.owner("a") == 3


def test_an_architecture_whose_training_failed_can_train_again():
    book = TrialBook()
    book.start("a", 0)
    book.wait("a", "dup")
    assert book.settle("a") == ["dup"]                   # failed or pruned: no owner
    assert book.verdict("a") == Verdict(Dedup.TRAIN) and book.owner("a") is None


def test_restore_owns_each_architecture_by_its_first_complete_trained_trial():
    book = TrialBook()
    book.restore([rec(0, "FAIL", "failed", digest="a"), rec(1, digest="a"), rec(2, digest="a"),
                  rec(3, "PRUNED", digest="b"), rec(4, "COMPLETE", "duplicate", digest="c"),
                  rec(5, "RUNNING", digest="d")])
    assert book.owner("a") == 1
    assert all(book.verdict(d) == Verdict(Dedup.TRAIN) for d in "bcd")


# -- best so far and the progress line -------------------------------------------------------------------------------


def test_best_single_objective_is_the_best_complete_trained_trial_first_on_ties():
    records = [rec(0, values=[0.5]), rec(1, values=[0.9]), rec(2, values=[0.9]),
               rec(3, "COMPLETE", "duplicate", [0.99]), rec(4, "PRUNED", values=None), rec(5, "RUNNING")]
    assert [r.number for r in best(records, ["maximize"])] == [1]
    assert [r.number for r in best(records, ["minimize"])] == [0]
    assert best([rec(0, "FAIL", "failed"), rec(1, "COMPLETE", "duplicate", [1.0])], ["maximize"]) == []


def test_best_several_objectives_keeps_the_trained_members_of_the_front_in_order():
    front = [rec(2, values=[0.9, 10.0]), rec(4, "COMPLETE", "duplicate", [0.9, 10.0]), rec(1, values=[0.5, 5.0])]
    assert [r.number for r in best([], ["maximize", "minimize"], front)] == [2, 1]


def test_status_line_reads_as_before():
    tally = {"complete": 3, "pruned": 1, "failed": 2, "running": 1, "rejected": 1, "invalid": 2, "duplicate": 4,
             "interrupted": 0}
    single = [rec(7, values=[0.91234])]
    assert status_line(tally, single, 10, ["val_acc"]) == (
        "progress: 6/10 trained, 1 running, 2 failed, 1 pruned, 3 rejected/invalid, 4 duplicates; "
        "best val_acc 0.9123 (trial 7)")
    assert status_line({**tally, "scored": 5}, single, 10, ["val_acc"]).endswith(
        "4 duplicates, 5 scored only; best val_acc 0.9123 (trial 7)")     # warm start's scored-only trials
    assert status_line(tally, [rec(1), rec(2)], 10, ["val_acc", "params"], final=True).endswith(
        "; Pareto set of 2")
    assert status_line(dict.fromkeys(COUNT_KEYS, 0), [], 2, ["val_acc"], final=True) == (
        "finished: 0/2 trained, 0 running, 0 failed, 0 pruned, 0 rejected/invalid, 0 duplicates; no result yet")


# -- recovery on a real Optuna storage (public storage API, no study privates) ---------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def stored_study(request, tmp_path):
    """A study whose storage object we made ourselves (sqlite: Optuna wraps it in its cache, we write past it)."""
    from nascore.nas.recovery import RunStudy

    if request.param == "memory":
        storage = optuna.storages.InMemoryStorage()
    else:
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    return RunStudy(study, storage)


def test_fail_stored_records_kind_and_reason_on_a_trial_known_by_number(stored_study):
    study = stored_study.study
    study.ask()
    held = study.ask()
    stored_study.fail_stored(0, "the search stopped while it ran", kind=Kind.INTERRUPTED)
    t = study.get_trials(deepcopy=False)[0]
    assert t.state == optuna.trial.TrialState.FAIL
    assert t.user_attrs == {"kind": "interrupted", "reason": "the search stopped while it ran"}
    study.ask()
    stored_study.fail_running("the sampler raised ValueError", held={held.number})
    states = [(t.state.name, t.user_attrs) for t in study.get_trials(deepcopy=False)]
    assert states[1] == ("RUNNING", {})
    assert states[2] == ("FAIL", {"reason": "the sampler raised ValueError"})


def test_recover_interrupts_running_trials_and_reruns_those_that_were_training(stored_study):
    study = stored_study.study
    done = study.ask()
    done.suggest_int("x", 0, 100)
    done.set_user_attr("kind", "trained")
    done.set_user_attr("hash", "h0")
    study.tell(done, 0.5)
    training = study.ask()
    x = training.suggest_int("x", 0, 100)
    training.set_user_attr("kind", "trained")
    study.ask()                                          # killed while it was being sampled: no architecture yet
    lines: list[str] = []
    book = TrialBook()
    stored_study.recover(book, lines.append)
    trials = study.get_trials(deepcopy=False)
    assert [(t.state.name, t.user_attrs.get("kind")) for t in trials] == [
        ("COMPLETE", "trained"), ("FAIL", "interrupted"), ("FAIL", "interrupted"), ("WAITING", None)]
    assert trials[3].user_attrs == {"retry_of": 1}
    assert study.ask().params == {} and study.get_trials(deepcopy=False)[3].system_attrs["fixed_params"] == {"x": x}
    assert lines == ["[trial 1] was interrupted; its parameters run again"]
    assert book.verdict("h0") == Verdict(Dedup.COPY, 0)
