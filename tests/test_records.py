"""What a trial records, and in how many storage writes (no training: a stand-in ``train``)."""

import numpy as np
import optuna
import pytest
import sqlalchemy
import yaml

from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search
from jumpsearch.training import TrainResult

SPACE = """
name: writes
data: {dataset: digits}
model: {groups: 1, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {choice: [8, 16, 32]}, jump_spacing: 0}
training: {epochs: 4, steps_per_epoch: 2, batch_size: 32}
sampler: random
"""
RECORDED = {"worker", "config", "params", "flops", "key", "curve", "train_seconds", "costs", "epochs", "images",
            "device", "backend", "val_loss", "accuracy", "accuracy_se"}  # fmt: skip


def stand_in(candidate, data, seed=0, on_epoch=None, **_):
    for epoch in range(1, candidate.training.epochs + 1):
        on_epoch(epoch, 0.5 + epoch / 100)
    costs = {"build": 0.1, "compile": 0.1, "first_step": 0.2, "fixed": 0.4, "train": [0.5] * 4, "evaluate": [0.1] * 4}
    return TrainResult(0.54, 1.0, 4, 2.4, "cpu", costs=costs)


@pytest.fixture
def counted_writes(tmp_path):
    """An SQLite storage, and the transactions that wrote a trial's user attributes on it."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/w.db")
    writes = {"open": False, "count": 0}

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")) and "trial_user_attributes" in statement:
            writes["open"] = True

    @sqlalchemy.event.listens_for(storage.engine, "commit")
    def committed(conn):
        writes["count"] += writes["open"]
        writes["open"] = False

    return storage, writes


def test_a_trained_trial_records_everything_in_at_most_five_writes_and_one_per_epoch(counted_writes):
    storage, writes = counted_writes
    space = space_from_dict(yaml.safe_load(SPACE))
    study = run_search(space, trials=1, storage=storage, train=stand_in)
    (trial,) = study.trials
    assert RECORDED <= set(trial.user_attrs)
    assert trial.user_attrs["curve"] == {"1": 0.51, "2": 0.52, "3": 0.53, "4": 0.54}
    assert trial.user_attrs["costs"]["train"] == [0.5] * 4
    assert writes["count"] <= 5 + 4


def test_a_storage_without_transactions_of_several_attributes_records_the_same(tmp_path):
    """A journal file takes one attribute per write: the same figures, written one by one."""
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    space = space_from_dict(yaml.safe_load(SPACE))
    (trial,) = run_search(space, trials=1, storage=journal, train=stand_in).trials
    assert RECORDED <= set(trial.user_attrs)
    assert trial.user_attrs["accuracy"] == 0.54


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_column_read_gives_what_whole_trials_hold(kind, tmp_path):
    """Relational storages answer with two queries, others by loading trials: the same rows either way."""
    from optuna.trial import TrialState

    from jumpsearch.columns import _rdb_rows, by_number, rows

    if kind == "sqlite":
        storage = f"sqlite:///{tmp_path}/c.db"
    else:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "c.log")))
    study = optuna.create_study(storage=storage, directions=["maximize", "minimize"])
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state, values, attrs in [
        (TrialState.COMPLETE, [0.9, 1200.0], {"epochs": 4, "curve": {"1": 0.5}}),
        (TrialState.COMPLETE, [0.9, 1200.0], {"epochs": 0, "duplicate_of": 0}),
        (TrialState.PRUNED, None, {"epochs": 1, "stopped_at": 1}),
        (TrialState.FAIL, None, {"fail_reason": "boom"}),
        (TrialState.COMPLETE, [float("-inf"), float("inf")], {}),
    ]:
        study.add_trial(optuna.trial.create_trial(state=state, values=values, params={"x": 0.5},
                                                  distributions=distributions, user_attrs=attrs))  # fmt: skip
    keys = ("epochs", "duplicate_of", "stopped_at")
    if kind == "sqlite":  # the two queries answered (no fallback to loading trials), as a fresh process reads
        assert _rdb_rows(optuna.load_study(study_name=study.study_name, storage=storage), keys) is not None
    read = rows(study, keys)
    assert [(r.number, r.state, r.values) for r in read] == [
        (0, TrialState.COMPLETE, (0.9, 1200.0)),
        (1, TrialState.COMPLETE, (0.9, 1200.0)),
        (2, TrialState.PRUNED, None),
        (3, TrialState.FAIL, None),
        (4, TrialState.COMPLETE, (float("-inf"), float("inf"))),
    ]
    assert [r.user_attrs for r in read] == [
        {"epochs": 4},
        {"epochs": 0, "duplicate_of": 0},
        {"epochs": 1, "stopped_at": 1},
        {},
        {},
    ]
    assert [t.user_attrs.get("curve") for t in by_number(study, [4, 0])] == [None, {"1": 0.5}]
    assert by_number(study, [np.int64(4)])[0].number == 4  # a number from a table
    for missing in (5, -1, "4", 4.0):
        with pytest.raises(IndexError, match=f"has no trial {missing!r}"):
            by_number(study, [missing])


def test_results_reads_the_trials_once_and_loads_only_what_it_prints(tmp_path, monkeypatch, capsys):
    """`jumpsearch results` in a fresh process: one column read for the summary and the front, and whole
    trials only for the front's members (the study check reads the study's attributes, not its trials)."""
    from jumpsearch import columns
    from jumpsearch.cli import main

    storage = f"sqlite:///{tmp_path}/r.db"
    space = space_from_dict(yaml.safe_load(SPACE))
    run_search(space, trials=3, storage=storage, train=stand_in)
    reads, loaded = [], []
    real_rows, real_get = columns._rdb_rows, optuna.storages.RDBStorage.get_trial
    monkeypatch.setattr(columns, "_rdb_rows", lambda study, keys: reads.append(keys) or real_rows(study, keys))
    monkeypatch.setattr(optuna.storages.RDBStorage, "get_trial",
                        lambda self, trial_id: loaded.append(trial_id) or real_get(self, trial_id))  # fmt: skip
    assert main(["results", "--storage", storage]) == 0
    printed = capsys.readouterr()
    front = [line for line in printed.out.splitlines()[1:] if line.strip()]
    assert len(reads) == 1 and "duplicate_of" in reads[0]
    assert 1 <= len(front) and len(set(loaded)) == len(front)
    assert "3 trained trials" in printed.err
