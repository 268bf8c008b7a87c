"""Many workers, one study: local workers on SQLite, PostgreSQL with a worker killed mid-trial, Redis."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime
from types import SimpleNamespace

import optuna
import pytest
import sqlalchemy.exc
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState, create_trial

from jumpsearch.cli import main
from jumpsearch.errors import JumpsearchError
from jumpsearch.records import is_stopped, trained
from jumpsearch.space import load_space
from jumpsearch.study import create_study, worker_name
from jumpsearch.workers import _keep_standbys, _Process, _Supervisor, _Worker

SPACE = """\
name: {name}
data: {{dataset: digits}}
model: {{groups: {{int: [1, 2]}}, blocks_per_group: 1, stem_filters: [8, 8], base_filters: {{choice: [8, 16]}}}}
training: {{epochs: {epochs}, steps_per_epoch: {steps}, batch_size: 32, learning_rate: {{float: [1e-3, 1e-2]}}}}
sampler: random
"""


def jumpsearch(*args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jumpsearch", "run", *args, "--quiet"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_local_workers_share_a_sqlite_study_without_locking_errors(tmp_path, write_space):
    space = write_space(SPACE.format(name="local", epochs=1, steps=2))
    process = jumpsearch("--space", str(space), "--workers", "2", "--trials", "6", cwd=tmp_path)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert "database is locked" not in output
    study = optuna.load_study(study_name="local", storage=f"sqlite:///{tmp_path}/studies/local.db")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 6  # the budget counts across workers, exactly
    assert len({t.user_attrs["worker"] for t in complete}) == 2
    assert not study.get_trials(states=(TrialState.FAIL,))
    keys = [t.user_attrs["key"] for t in trained(study)]
    assert len(keys) == len(set(keys))  # no configuration trained twice


def server_answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def postgres_url():
    psycopg = pytest.importorskip("psycopg")  # SQLAlchemy's driver for postgresql:// URLs
    if not server_answers(5432):
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    name = f"jumpsearch_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", autocommit=True)
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def two_supervisors_one_killed_worker(space, storage, name, cwd, after_epochs=1) -> tuple[int, datetime]:
    """Run two supervisors on one study; SIGKILL a worker once a trial has trained ``after_epochs``
    epochs; wait for both to finish. Returns the killed trial's number and when it died."""
    args = ["--space", str(space), "--storage", storage, "--trials", "6", "--heartbeat", "1"]
    supervisors = [jumpsearch(*args, cwd=cwd) for _ in range(2)]
    victim_trial, killed_at = None, None
    deadline = time.time() + 300
    while victim_trial is None and time.time() < deadline:  # kill a worker while it trains
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except KeyError:
            time.sleep(0.5)
            continue
        for trial in study.get_trials(states=(TrialState.RUNNING,)):
            if len(trial.user_attrs.get("curve", {})) >= after_epochs:
                os.kill(int(trial.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
                victim_trial, killed_at = trial.number, datetime.now()
                break
        time.sleep(0.3)
    assert victim_trial is not None and killed_at is not None, "no worker was caught mid-trial"
    for supervisor in supervisors:
        output, _ = supervisor.communicate(timeout=600)
        assert supervisor.returncode == 0, output[-3000:]
    return victim_trial, killed_at


def test_a_worker_killed_mid_trial_loses_nothing(tmp_path, write_space, postgres_url):
    """Two `jumpsearch run` processes (as on two machines) on PostgreSQL, same seed; one's worker dies by
    SIGKILL mid-trial. Its supervisor starts another; the dead trial is failed by heartbeat and re-run
    once; no configuration is trained twice."""
    space = write_space(SPACE.format(name="shared", epochs=8, steps=8))  # seen at epoch 1: 7 more to kill it in
    victim_trial, killed_at = two_supervisors_one_killed_worker(space, postgres_url, "shared", tmp_path)
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert trials[victim_trial].state == TrialState.FAIL  # failed by heartbeat, not left RUNNING
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim_trial]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE  # re-run once
    assert retries[0].params == trials[victim_trial].params
    assert len(trained(study)) >= 6
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(  # none lost; a trial sampled once the budget was full trained nothing
        t.state == TrialState.COMPLETE or t.number == victim_trial or t.user_attrs.get("over_budget") for t in trials
    )
    keys = [t.user_attrs["key"] for t in trained(study)]
    assert len(keys) == len(set(keys))
    print(f"SIGKILL to retried trial start: {(retries[0].datetime_start - killed_at).total_seconds():.1f} s")


def test_a_killed_worker_leaves_the_schedule_consistent(tmp_path, write_space, postgres_url):
    """The schedule on, two supervisors on PostgreSQL, a worker killed after its first rung: every trial's
    rung records are the rungs it reached, stopped trials are pruned where they stopped, the killed trial
    is failed and retried, and nothing is trained twice."""
    space = write_space(SPACE.format(name="rungs", epochs=9, steps=8) + "schedule: {name: asha, reduction_factor: 3}\n")
    victim, _ = two_supervisors_one_killed_worker(space, postgres_url, "rungs", tmp_path, after_epochs=2)
    trials = optuna.load_study(study_name="rungs", storage=postgres_url).get_trials()
    assert trials[victim].state == TrialState.FAIL
    assert set(trials[victim].user_attrs["rungs"]) in ({"1"}, {"1", "3"})  # killed after epoch 2: rung 1 stands
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim]
    assert len(retries) == 1 and retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retries[0].user_attrs["key"] == trials[victim].user_attrs["key"]
    done = [t for t in trials if t.state == TrialState.COMPLETE or is_stopped(t)]
    assert len(done) >= 6 and not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for trial in done:
        reached = {str(r) for r in (1, 3) if r <= trial.user_attrs["epochs"]}
        assert set(trial.user_attrs["rungs"]) == reached, trial.number
        assert all(0 <= a <= 1 for a in trial.user_attrs["rungs"].values())
        if is_stopped(trial):
            assert trial.user_attrs["stopped_at"] in (1, 3)
            assert trial.user_attrs["accuracy"] == trial.user_attrs["rungs"][str(trial.user_attrs["stopped_at"])]
        else:
            assert trial.user_attrs["epochs"] == 9
    keys = [t.user_attrs["key"] for t in done]
    assert len(keys) == len(set(keys))


def test_redis_journal_storage_holds_a_study(tmp_path, monkeypatch, write_space):
    pytest.importorskip("redis")
    if not server_answers(6379):
        pytest.skip("no Redis server at 127.0.0.1:6379")
    name = f"redis-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    space = write_space(SPACE.format(name=name, epochs=1, steps=2))
    url = "redis://127.0.0.1:6379/0"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    assert main(["run", "--space", str(space), "--storage", url, "--trials", "2", "-q"]) == 0
    try:
        study = optuna.load_study(study_name=name, storage=storage)
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
        assert main(["run", "--space", str(space), "--storage", url, "--trials", "3", "-q"]) == 0  # resumes
        assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    finally:
        optuna.delete_study(study_name=name, storage=storage)


def test_memory_does_not_creep_over_many_trials(tmp_path, write_space):
    """The worker training trial 15 holds no more resident memory than the one training trial 3 (within a
    small margin): TensorFlow keeps native memory of every model it traces (10-20 MB a trial here,
    whatever Keras frees), so each worker process is replaced every --recycle trials."""
    space = write_space(SPACE.format(name="memory", epochs=1, steps=1))
    supervisor = jumpsearch("--space", str(space), "--trials", "16", "--recycle", "6", cwd=tmp_path)
    storage = f"sqlite:///{tmp_path}/studies/memory.db"

    def resident_mb(pid: int) -> float:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    seen: dict[int, float] = {}
    while supervisor.poll() is None and len(seen) < 2:
        if not (tmp_path / "studies" / "memory.db").exists():
            time.sleep(0.1)
            continue
        try:
            study = optuna.load_study(study_name="memory", storage=storage)
            done = len(trained(study))
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            for mark in (3, 15):
                if done >= mark and mark not in seen and running and "worker" in running[0].user_attrs:
                    seen[mark] = resident_mb(int(running[0].user_attrs["worker"].rsplit(":", 1)[1]))
        except (KeyError, FileNotFoundError, ProcessLookupError, sqlalchemy.exc.SQLAlchemyError):
            pass  # the study is being created, or a worker has just left
        time.sleep(0.1)
    output, _ = supervisor.communicate(timeout=600)
    assert supervisor.returncode == 0, output[-3000:]
    print(f"resident memory of the worker after trial 3: {seen[3]:.0f} MB, after trial 15: {seen[15]:.0f} MB")
    assert seen[15] <= seen[3] * 1.1 + 30


def test_gpu_lists_are_checked(monkeypatch):
    from jumpsearch import JumpsearchError
    from jumpsearch.workers import gpu_ids

    assert gpu_ids("0,1") == ["0", "1"]
    assert gpu_ids("0, 0") == ["0", "0"]  # two workers packed on one GPU
    with pytest.raises(JumpsearchError, match="gpus=first: expected all or GPU indices"):
        gpu_ids("first")
    monkeypatch.setattr("shutil.which", lambda name: None)  # a machine without NVIDIA's tools
    with pytest.raises(JumpsearchError, match="nvidia-smi lists no GPU"):
        gpu_ids("all")


def trainings(study) -> list:
    """Trials that spent training (a reused result records 0 epochs; one that never trained, none)."""
    return [t for t in study.get_trials() if t.user_attrs.get("epochs", 0) > 0]


def test_workers_never_train_past_the_budget(tmp_path, write_space):
    space = write_space(SPACE.format(name="budget", epochs=1, steps=2))
    storage = f"sqlite:///{tmp_path}/studies/budget.db"
    process = jumpsearch("--space", str(space), "--workers", "3", "--trials", "2", cwd=tmp_path)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    assert len(trainings(optuna.load_study(study_name="budget", storage=storage))) == 2
    # Two supervisors of two workers each, three trials left: four workers race for them.
    supervisors = [jumpsearch("--space", str(space), "--workers", "2", "--trials", "5", cwd=tmp_path) for _ in range(2)]
    for supervisor in supervisors:
        output, _ = supervisor.communicate(timeout=600)
        assert supervisor.returncode == 0, output[-3000:]
    study = optuna.load_study(study_name="budget", storage=storage)
    assert len(trainings(study)) == 5 and len(trained(study)) == 5
    assert all(t.state == TrialState.PRUNED for t in study.get_trials() if t.user_attrs.get("over_budget"))


def test_a_killed_worker_s_trial_is_failed_with_its_reason_and_retried(tmp_path, write_space):
    """The run outlives the dead worker's heartbeat grace by far less than its 2 minutes: the supervisor
    fails the trial itself, naming the signal, and it is queued again."""
    space = write_space(SPACE.format(name="orphan", epochs=30, steps=8))
    storage = f"sqlite:///{tmp_path}/studies/orphan.db"
    supervisor = jumpsearch("--space", str(space), "--trials", "1", cwd=tmp_path)
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline:
        try:
            running = optuna.load_study(study_name="orphan", storage=storage).get_trials(states=(TrialState.RUNNING,))
        except (KeyError, sqlalchemy.exc.SQLAlchemyError):
            running = []
        for trial in running:
            if len(trial.user_attrs.get("curve", {})) >= 1:
                os.kill(int(trial.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
                victim = trial
        time.sleep(0.2)
    assert victim is not None, "no worker was caught mid-trial"
    output, _ = supervisor.communicate(timeout=600)
    assert supervisor.returncode == 0, output[-3000:]
    trials = optuna.load_study(study_name="orphan", storage=storage).get_trials()
    failed = trials[victim.number]
    assert failed.state == TrialState.FAIL and failed.user_attrs["worker_died"]
    assert failed.user_attrs["fail_reason"] == f"its worker {victim.user_attrs['worker']} was killed by SIGKILL"
    (retry,) = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == victim.number]
    assert retry.state == TrialState.COMPLETE and retry.params == failed.params


def test_run_says_once_on_which_device_it_trains(tmp_path, write_space):
    space = write_space(SPACE.format(name="device", epochs=1, steps=1))
    process = jumpsearch("--space", str(space), "--workers", "2", "--trials", "3", "--recycle", "1", cwd=tmp_path)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-3000:]
    said = [line for line in output.splitlines() if line.startswith("jumpsearch: training on ")]
    gpu = shutil.which("nvidia-smi") is not None
    assert len(said) == 1 and (gpu or said[0] == "jumpsearch: training on CPU (no GPU visible) with tensorflow")


class _Recorded(_Supervisor):
    """A supervisor that records which slots it would give a standby, and starts nothing."""

    def prepare(self, slot: _Worker) -> None:
        slot.standby = "standby"  # type: ignore[assignment]

    def dismiss(self, slots=None) -> None:
        for slot in self.slots if slots is None else slots:
            slot.standby = None


@pytest.mark.parametrize(("budget", "standbys"), [(10, [True, True]), (8, [False, True]), (6, [False, False])])
def test_standbys_go_to_the_workers_recycled_before_the_budget_is_filled(budget, standbys):
    """Recycled every 3 trials: worker 1 has trained 1 (2 left in its share), worker 2 one and failed one
    (a failure counts towards its recycling, not the budget: 1 left), another machine 1, so 3 trained and
    3 in the workers' shares; trials beyond them need one replacement per 3, worker 2's first (nearest
    its recycling)."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for worker in (1, 2, 9):
        attrs = {"worker": worker_name(worker)}
        study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 10], user_attrs=attrs))
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"worker": worker_name(2)}))
    slots = [_Worker(None, process=_Process(SimpleNamespace(pid=pid))) for pid in (1, 2)]  # type: ignore[arg-type]
    supervisor = _Recorded(slots)
    assert _keep_standbys(supervisor, study, budget, recycle=3) is False  # both workers have trained
    assert [slot.standby is not None for slot in slots] == standbys


def test_a_standby_waits_until_its_worker_has_trained_a_trial():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(create_trial(state=TrialState.COMPLETE, values=[0.5, 10], user_attrs={"worker": worker_name(1)}))
    slots = [_Worker(None, process=_Process(SimpleNamespace(pid=pid))) for pid in (1, 2)]  # type: ignore[arg-type]
    supervisor = _Recorded(slots)
    # Shares 1 + 2, 1 trained: 3 beyond, one replacement each; worker 2 has trained nothing yet.
    assert _keep_standbys(supervisor, study, budget=7, recycle=2) is True  # look again
    assert [slot.standby is not None for slot in slots] == [True, False]


class _Pipe:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.closed = False

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class _Popen:
    """A worker process as the supervisor sees it: alive or exited, killed or not."""

    def __init__(self, alive: bool = True) -> None:
        self.alive, self.killed, self.pid = alive, False, 7
        self.stdin, self.stderr = _Pipe(), None

    def poll(self) -> int | None:
        return None if self.alive else 0

    def kill(self) -> None:
        self.alive, self.killed = False, True

    def wait(self) -> int:
        return 0


def test_a_slot_takes_its_standby_unless_it_failed_and_a_dead_one_waits_for_the_next_turn(monkeypatch):
    supervisor = _Supervisor([_Worker(None)])
    supervisor.job = {"space": {"name": "s"}}
    fresh: list[_Process] = []
    monkeypatch.setattr(supervisor, "spawn", lambda slot, standby=False: fresh.append(_Process(_Popen())) or fresh[-1])
    (slot,) = supervisor.slots
    slot.standby = ready = _Process(_Popen())
    supervisor.start(slot, 5.0)
    assert slot.process is ready and slot.standby is None and not fresh
    assert ready.popen.stdin.lines == ['{"timeout": 5.0}\n'] and ready.popen.stdin.closed  # its turn
    slot.standby = failed = _Process(_Popen(), error="storage sqlite:///x.db: unreachable")  # still exiting
    supervisor.start(slot, None)
    assert failed.popen.killed and slot.process is fresh[0]  # a new process meets whatever stopped it
    assert '"timeout": null' in fresh[0].popen.stdin.lines[0] and '"space"' in fresh[0].popen.stdin.lines[0]
    slot.standby = _Process(_Popen(alive=False))  # died before its turn
    supervisor.prepare(slot)
    supervisor.prepare(slot)
    assert slot.standby is None and len(fresh) == 1  # not replaced over and over during this turn
    supervisor.start(slot, None)
    supervisor.prepare(slot)
    assert slot.standby is fresh[-1] and len(fresh) == 3  # the next turn has one again


def test_a_standby_loads_the_study_and_writes_nothing(tmp_path, write_space):
    space = load_space(write_space(SPACE.format(name="quiet", epochs=1, steps=2)))
    journal = tmp_path / "quiet.log"
    with pytest.raises(JumpsearchError, match="study 'quiet' in .*: not found"):
        create_study(space, str(journal), load_only=True)
    create_study(space, str(journal))
    size = journal.stat().st_size
    study = create_study(space, str(journal), load_only=True)
    assert study.study_name == "quiet" and journal.stat().st_size == size
    create_study(space, str(journal))  # a create, even of a study that exists, appends to the journal
    assert journal.stat().st_size > size
