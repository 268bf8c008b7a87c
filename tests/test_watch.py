"""What a search says, and when it stops on its own: a space with nothing new left to train stops with
one message, counting rejected points and duplicates together; a library's warnings stay off the terminal."""

import logging
import subprocess
import sys
import warnings

import optuna
import pytest

from jumpsearch import JumpsearchError
from jumpsearch.logs import configure
from jumpsearch.records import searched, summary
from jumpsearch.space import load_space
from jumpsearch.study import _within_budget, run_search, worker_name
from jumpsearch.training import TrainResult

ONE_FEASIBLE = """\
name: one
data: {dataset: digits}
model: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 64, 96]}}
training: {epochs: 1, steps_per_epoch: 1, learning_rate: 0.01}
constraints: {max_params: 5000}
sampler: random
"""


def test_rejections_between_duplicates_do_not_hide_an_exhausted_space(tmp_path, write_space, caplog):
    """One configuration fits the constraint; most points are rejected, the rest repeat it."""
    calls = []

    def train(candidate, data, seed, on_epoch=None):
        calls.append(candidate)
        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    caplog.set_level(logging.INFO, logger="jumpsearch")
    storage = f"sqlite:///{tmp_path}/one.db"
    exhausted = r"in a row had been trained already \(\d+ rejected ones between them\): the space looks exhausted at 1 "
    with pytest.raises(JumpsearchError, match=exhausted):
        run_search(load_space(write_space(ONE_FEASIBLE)), trials=5, storage=storage, train=train, timeout=120)
    study = optuna.load_study(study_name="one", storage=storage)
    assert len(calls) == 1 and searched(study) == 1
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    duplicates = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert rejected and duplicates  # both kinds, interleaved, counted together
    (first,) = [t.number for t in study.trials if "epochs" in t.user_attrs and not t.user_attrs["epochs"] == 0]
    assert len(study.trials) - first - 1 <= 50  # 50 points in a row that trained nothing new, at most
    assert not [r for r in caplog.records if "again" in r.getMessage()]  # no line per duplicate at INFO
    assert f"{len(duplicates)} sampled points repeated a trained configuration" in summary(study)


def test_library_warnings_are_debug_lines(capsys, caplog):
    configure(logging.INFO)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        optuna.distributions.IntDistribution(1, 4, step=2)  # Optuna: "the range is not divisible by step"
        warnings.warn("a library's remark", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == ""
    caplog.set_level(logging.DEBUG, logger="jumpsearch")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a library's remark", UserWarning, stacklevel=1)
    assert "UserWarning: a library's remark" in caplog.text


def test_a_trial_past_the_budget_trains_nothing_and_a_dead_process_s_trial_holds_none(tmp_path, write_space):
    """The budget gate: trials numbered before count while they may still train, but not a running trial
    whose process on this machine is gone (a journal storage has no heartbeat to fail it)."""
    calls = []

    def train(candidate, data, seed, on_epoch=None):
        calls.append(candidate)
        return TrainResult(0.5, 1.0, 1, 0.1, "CPU")

    storage = str(tmp_path / "journal.log")
    space = load_space(write_space())
    run_search(space, trials=1, storage=storage, train=train)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name="tiny", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage)))  # fmt: skip
    zombie = study.ask()
    zombie.set_user_attr("worker", worker_name(dead.pid))
    run_search(space, trials=2, storage=storage, train=train)
    assert len(calls) == 2
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned, match="the study holds its 2 trained trials"):
        _within_budget(trial, 2)
    assert study.trials[trial.number].user_attrs["over_budget"]
