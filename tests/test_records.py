"""What a trial records, and in how many storage writes (no training: a stand-in ``train``)."""

import re
import threading
import warnings

import numpy as np
import optuna
import pytest
import sqlalchemy
import test_workers
import yaml

from jumpsearch.errors import JumpsearchError
from jumpsearch.records import held_writes, record, record_configuration
from jumpsearch.space import space_from_dict
from jumpsearch.study import WORKER, run_search
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
    """An SQLite storage with a heartbeat (as a worker's), and the transactions that wrote to a trial's
    tables on it (its creation, heartbeat, state, parameters, values and attributes: every write Optuna
    and jumpsearch make for a trial), each as the list of its statements' first words."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/w.db", heartbeat_interval=60)
    writes = {"log": []}
    # A transaction's statements, by connection: the heartbeat thread writes on its own connection,
    # sometimes between another transaction's statements and its commit.
    open_: dict[int, list[str]] = {}

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args):
        if re.match(r"\s*(INSERT INTO|UPDATE) trial", statement, re.IGNORECASE):
            open_.setdefault(id(conn), []).append(" ".join(statement.split()[:3]).upper())

    @sqlalchemy.event.listens_for(storage.engine, "commit")
    def committed(conn):
        if statements := open_.pop(id(conn), None):
            writes["log"].append(statements)

    @sqlalchemy.event.listens_for(storage.engine, "rollback")
    def rolled_back(conn):
        open_.pop(id(conn), None)

    return storage, writes


def per_trial(log: list[list[str]]) -> list[int]:
    """The writes of each trial of a one-process search: a trial's begin with its creation."""
    counts: list[int] = []
    for statements in log:
        if "INSERT INTO TRIALS" in statements:
            counts.append(0)
        counts[-1] += 1
    return counts


def test_a_trained_trial_records_everything_in_at_most_five_writes_and_one_per_epoch(counted_writes):
    storage, writes = counted_writes
    searched = SPACE.replace("batch_size: 32}", "batch_size: {choice: [16, 32]}, learning_rate: {float: [0.001, 0.1]}}")
    space = space_from_dict(yaml.safe_load(searched))  # three parameters: written together
    study = run_search(space, trials=1, storage=storage, train=stand_in)
    (trial,) = study.trials
    assert RECORDED <= set(trial.user_attrs)
    assert trial.user_attrs["curve"] == {"1": 0.51, "2": 0.52, "3": 0.53, "4": 0.54}
    assert trial.user_attrs["costs"]["train"] == [0.5] * 4
    assert per_trial(writes["log"]) == [5 + 4], writes["log"]


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_trials_attributes_go_in_one_statement_and_read_back_as_optuna_writes_them(kind, tmp_path, request):
    url = f"sqlite:///{tmp_path}/a.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name="a", storage=storage)
    trial = study.ask()
    trial.set_user_attr("d", [1])  # Optuna's own write
    inserts = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def seen(conn, cursor, statement, *args):
        if re.match(r"\s*INSERT INTO trial_user_attributes", statement, re.IGNORECASE):
            inserts.append(statement)

    record(trial, {"a": 1, "b": {"x": [1.5, None]}, "c": "text"})
    record(trial, {"a": 2, "d": [2]})  # replaces a value Optuna wrote, and one of ours
    with held_writes(trial):
        trial.set_user_attr("c", "held")
        trial.set_user_attr("g", 0)
        record(trial, {"g": 3})  # what is held goes with it, the later value of a key winning
    assert len(inserts) == 3  # a statement for each record, whatever its number of attributes
    record(trial, {f"k{i}": i for i in range(700)})  # more rows than one statement of 999 values holds
    expected = {"a": 2, "b": {"x": [1.5, None]}, "c": "held", "d": [2], "g": 3} | {f"k{i}": i for i in range(700)}
    assert trial.user_attrs == expected
    assert optuna.load_study(study_name="a", storage=url).trials[0].user_attrs == expected  # another process
    study.tell(trial, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        record(trial, {"e": 1, "f": 2})


def test_a_search_with_an_epoch_budget_stops_once_its_trials_trained_that_many(tmp_path):
    """Each trial trains 4 epochs: a budget of 10 stops the search after the third (12 epochs spent)."""
    from jumpsearch.records import spent

    space = space_from_dict(
        yaml.safe_load(SPACE.replace("batch_size: 32}", "batch_size: 32, learning_rate: {float: [0.001, 0.1]}}"))
    )
    study = run_search(space, trials=10, storage=f"sqlite:///{tmp_path}/b.db", train=stand_in, epoch_budget=10)
    assert len(study.trials) == 3
    assert spent(study)["epochs"] == 12
    assert spent(optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path}/b.db"))["epochs"] == 12


def stopping_stand_in(candidate, data, seed=0, on_epoch=None, rungs=(), on_rung=None):
    """Each later trial less accurate (the seed counts trials), scored and judged at the rungs."""
    accuracy = 0.9 - seed / 100
    for epoch in range(1, candidate.training.epochs + 1):
        go = epoch not in rungs or on_rung(epoch, accuracy)
        on_epoch(epoch, accuracy)
        if not go:
            return TrainResult(accuracy, 1.0, epoch, 0.5 * epoch, "cpu", stopped=True)
    return TrainResult(accuracy, 1.0, candidate.training.epochs, 2.0, "cpu")


def test_a_trial_stopped_at_its_first_rung_writes_at_most_six_times(counted_writes):
    """Its creation, heartbeat, point and description, the first epoch's curve with the rung's record,
    the result, the final state: 5 + 1 per epoch."""
    storage, writes = counted_writes
    raw = yaml.safe_load(SPACE.replace("batch_size: 32}", "batch_size: 32, learning_rate: {float: [0.001, 0.1]}}"))
    raw["model"]["base_filters"] = 8  # one network: accuracy alone ranks the trials at a rung
    raw["schedule"] = {"name": "asha", "min_epochs": 1}
    study = run_search(space_from_dict(raw), trials=4, storage=storage, train=stopping_stand_in)
    stopped = [t.number for t in study.trials if t.user_attrs.get("stopped_at") == 1]
    assert stopped, [t.user_attrs for t in study.trials]
    assert all(study.trials[n].user_attrs["curve"] == {"1": 0.9 - n / 100} for n in stopped)
    counts = per_trial(writes["log"])
    assert all(counts[n] <= 5 + 1 for n in stopped), (counts, writes["log"])


def test_a_trial_s_parameters_are_written_in_one_transaction_and_read_back_as_suggested(tmp_path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path}/p.db")
    seen = {"open": 0, "inserts": 0, "transactions": 0}

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def inserted(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO TRIAL_PARAMS"):
            rows = len(parameters) if executemany else 1
            seen["open"] += rows
            seen["inserts"] += rows

    @sqlalchemy.event.listens_for(storage.engine, "commit")
    def committed(conn):
        seen["transactions"] += bool(seen["open"])
        seen["open"] = 0

    searched = SPACE.replace("batch_size: 32}", "batch_size: {choice: [16, 32]}, learning_rate: {float: [0.001, 0.1]}}")
    run_search(space_from_dict(yaml.safe_load(searched)), trials=3, storage=storage, train=stand_in)
    trials = optuna.load_study(study_name="writes", storage=f"sqlite:///{tmp_path}/p.db").trials
    assert len(trials) == 3 and all(len(t.params) >= 3 for t in trials)
    assert seen["transactions"] == 3 and seen["inserts"] == sum(len(t.params) for t in trials)
    for trial in trials:
        config = trial.user_attrs["config"]
        assert trial.params["base_filters"] == config["model"]["base_filters"]
        assert trial.params["learning_rate"] == config["training"]["learning_rate"]
        assert trial.params["batch_size"] == config["training"]["batch_size"]


def test_a_storage_without_transactions_of_several_attributes_records_the_same(tmp_path):
    """A journal file takes one attribute per write: the same figures, written one by one."""
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j.log")))
    space = space_from_dict(yaml.safe_load(SPACE))
    (trial,) = run_search(space, trials=1, storage=journal, train=stand_in).trials
    assert RECORDED <= set(trial.user_attrs)
    assert trial.user_attrs["accuracy"] == 0.54


def test_a_trial_that_fails_while_its_writes_are_held_keeps_its_point_and_worker(tmp_path, monkeypatch):
    def broken(config):
        raise RuntimeError("boom")

    monkeypatch.setattr("jumpsearch.study.count", broken)  # after the point is suggested, before it is recorded
    storage = f"sqlite:///{tmp_path}/f.db"
    with pytest.raises(JumpsearchError, match="RuntimeError: boom"):  # five in a row stop the search
        run_search(space_from_dict(yaml.safe_load(SPACE)), trials=1, storage=storage, train=stand_in)
    trial = optuna.load_study(study_name="writes", storage=storage).trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["fail_reason"] == "RuntimeError: boom"
    assert trial.params == {"base_filters": trial.params["base_filters"]} and trial.user_attrs["worker"] == WORKER


def test_a_retried_stale_trial_records_its_key_and_worker_itself(tmp_path):
    from jumpsearch.storage import _StaleTrial

    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize", "minimize"])
    trial = study.ask({"base_filters": optuna.distributions.CategoricalDistribution([8, 16])})
    record(trial, {"worker": "gone:1", "key": "net", "config": {"model": {}}})
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)  # as its heartbeat check does
    _StaleTrial(4)(study, study.trials[0])
    failed, retry = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path}/s.db").trials
    assert failed.user_attrs["worker_died"] and failed.user_attrs["key"] == "net"
    assert retry.state == optuna.trial.TrialState.WAITING and retry.params == failed.params
    assert retry.user_attrs == {"config": {"model": {}}}


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_of_trials_recording_one_configuration_at_once_exactly_one_sees_no_twin(kind, tmp_path, request):
    """Three workers (threads, each with its own connection) record one key at the same moment, 20 times:
    each time one of them sees no earlier record (it trains) and the others see it."""
    url = f"sqlite:///{tmp_path}/race.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    optuna.create_study(study_name="race", storage=url)
    rounds, workers = 20, 3
    studies = [optuna.load_study(study_name="race", storage=optuna.storages.RDBStorage(url)) for _ in range(workers)]
    barrier = threading.Barrier(workers)
    seen: list[list[list[int] | None]] = [[] for _ in range(rounds)]

    def work(study):
        for n in range(rounds):
            trial = study.ask()
            barrier.wait()
            seen[n].append(record_configuration(trial, {"params": n}, f"net{n}"))

    threads = [threading.Thread(target=work, args=(study,)) for study in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(sorted(map(len, records)) == [0, 1, 2] for records in seen), seen


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


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_the_database_chooses_the_front_that_comparing_every_pair_gives(kind, tmp_path, request):
    """Values on a grid (equal points, equal accuracy at more params), duplicates, unfinished trials,
    excluded numbers, each pair of directions: the front the database returns is the one of comparing
    every pair of trials; a value that is not finite leaves the choice to Python."""
    import random

    from optuna.trial import TrialState

    from jumpsearch.columns import front_rows

    def pairwise(trials, signs):  # no other trial at least as good in both, better in one
        signed = [(signs[0] * t.values[0], signs[1] * t.values[1]) for t in trials]
        dominated = lambda p: any(o[0] <= p[0] and o[1] <= p[1] and o != p for o in signed)  # noqa: E731
        return [t for t, p in zip(trials, signed, strict=True) if not dominated(p)]

    storage = f"sqlite:///{tmp_path}/f.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="f", storage=storage, directions=["maximize", "minimize"])
    rng, distributions = random.Random(3), {"x": optuna.distributions.FloatDistribution(0, 1)}
    for _ in range(400):
        state = rng.choice([TrialState.COMPLETE] * 6 + [TrialState.PRUNED, TrialState.FAIL])
        accuracy = rng.randint(0, 19) / 20
        values = [accuracy, float(1000 * rng.randint(1, 30) * (1 + 2 * accuracy))]  # accuracy costs params
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values if state == TrialState.COMPLETE else None, params={"x": 0.5},
            distributions=distributions, user_attrs={"duplicate_of": 0} if rng.random() < 0.1 else {}))  # fmt: skip
    ranked = [t for t in study.trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    first = pairwise(ranked, [-1.0, 1.0])
    assert len({tuple(t.values) for t in first}) >= 4 and len(first) > len({tuple(t.values) for t in first})
    for signs in ([-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]):
        for excluded in (set(), {t.number for t in first}):
            expected = pairwise([t for t in ranked if t.number not in excluded], signs)
            fresh = optuna.load_study(study_name="f", storage=storage)  # a process that has not read the trials
            chosen = front_rows(fresh, signs, excluded)
            assert chosen is not None, "the database did not choose"
            assert [(r.number, r.values) for r in chosen] == [(t.number, tuple(t.values)) for t in expected]
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, values=[0.9, float("inf")],
                                              params={"x": 0.5}, distributions=distributions))  # fmt: skip
    assert front_rows(optuna.load_study(study_name="f", storage=storage), [-1.0, 1.0]) is None


@pytest.mark.parametrize("kind", ["sqlite", "postgresql", "journal"])
def test_the_summary_line_counts_in_the_database_what_the_trials_hold(kind, tmp_path, request, monkeypatch):
    """On a relational storage the summary comes from two aggregate queries, with no trial read into
    Python; elsewhere from the trials. The same line either way."""
    from optuna.trial import TrialState

    from jumpsearch import columns
    from jumpsearch.records import summary

    if kind == "journal":
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.log")))
    else:
        storage = f"sqlite:///{tmp_path}/s.db" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    study = optuna.create_study(study_name="s", storage=storage, directions=["maximize", "minimize"])
    distributions = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for state, values, attrs in [
        (TrialState.COMPLETE, [0.9, 1200.0], {"epochs": 4, "images": 400, "train_seconds": 1.5}),
        (TrialState.COMPLETE, [0.9, 1200.0], {"epochs": 0, "duplicate_of": 0}),
        (TrialState.PRUNED, None, {"epochs": 1, "images": 100, "train_seconds": 0.5, "stopped_at": 1}),
        (TrialState.PRUNED, None, {"epochs": 1, "images": 100, "train_seconds": 0.25, "stopped_at": 1}),
        (TrialState.PRUNED, None, {"rejected": "over max_params"}),  # refused before training: not counted
        (TrialState.FAIL, None, {"epochs": 2, "images": 200, "train_seconds": 0.75, "fail_reason": "boom"}),
        (TrialState.COMPLETE, [0.8, 900.0], {"epochs": 4, "images": 400, "train_seconds": 1.0}),
    ]:
        study.add_trial(optuna.trial.create_trial(state=state, values=values, params={"x": 0.5},
                                                  distributions=distributions, user_attrs=attrs))  # fmt: skip
    line = (
        "4 trained trials (2 stopped early by the schedule); 1 sampled points repeated a trained configuration"
        " (not trained again); 12 epochs, 1,200 images, 4 s of training"
    )
    fresh = optuna.load_study(study_name="s", storage=storage)  # a process that has not read the trials
    if kind != "journal":
        counted = columns._rdb_tally(fresh, ("duplicate_of", "stopped_at"), ("epochs",))
        assert counted is not None and counted[1] == {"epochs": 12.0}  # the database answered
        with monkeypatch.context() as patched:
            refused = lambda *a, **k: pytest.fail("a trial was read")  # noqa: E731
            patched.setattr(columns, "_rdb_rows", refused)
            patched.setattr(type(fresh._storage), "get_all_trials", refused)
            assert summary(fresh) == line
        monkeypatch.setattr(columns, "_rdb", lambda study: None)  # as a storage without queries: from the trials
    assert summary(optuna.load_study(study_name="s", storage=storage)) == line


def test_results_reads_the_trials_once_and_loads_only_what_it_prints(tmp_path, monkeypatch, capsys):
    """`jumpsearch results` in a fresh process: the summary counted and the front chosen by the database,
    and whole trials only for the front's members (the study check reads the study's attributes, not its
    trials)."""
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
    assert reads == []  # no column read: the database counted the summary and chose the front
    assert 1 <= len(front) and len(set(loaded)) == len(front)
    assert "3 trained trials" in printed.err


postgres_url = test_workers.postgres_url  # a fixture: a fresh PostgreSQL database
