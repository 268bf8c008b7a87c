"""A signal always stops a search: wherever it lands in a trial's start (Optuna creating it or starting
its heartbeat thread, building, compiling, the first step, a rung, a storage write, the last evaluation),
and even when the code it lands in swallows it (a
finalizer, as TensorFlow's and JAX's garbage-collector callbacks do), the running trial fails with the
signal as its reason and no further trial trains."""

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import keras
import optuna
import pytest
import sqlalchemy
from optuna.storages._heartbeat import HeartbeatThread
from optuna.trial import TrialState

import jumpsearch.models
import jumpsearch.study
import jumpsearch.training
from conftest import TINY_SPACE
from jumpsearch import errors
from jumpsearch.errors import Interrupted, check_interrupted, handle_signals, interruption
from jumpsearch.space import load_space
from jumpsearch.study import run_search
from jumpsearch.workers import READY_PREFIX

SCHEDULED = "schedule: {name: asha, min_epochs: 1}\n"


class _Finalizer:
    def __del__(self) -> None:
        signal.raise_signal(signal.SIGTERM)  # its handler's exception is raised here, and swallowed


def swallowed_sigterm() -> None:
    """SIGTERM arriving while a finalizer runs: Python prints "Exception ignored" and goes on."""
    _Finalizer()


def direct_sigterm() -> None:
    signal.raise_signal(signal.SIGTERM)


@pytest.fixture
def signals(monkeypatch):
    """This process handles SIGINT and SIGTERM as the CLI's do, for one test."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setattr(errors, "_pending", None)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    handle_signals()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def once(hook, action, after=False):
    """``hook``'s first call sends the signal (before it runs, or ``after``); every call then does what the
    wrapped code does."""
    fired = []

    def wrapped(*args, **kwargs):
        first = not fired
        fired.append(True)
        if first and not after:
            action()
        result = hook(*args, **kwargs)
        if first and after:
            action()
        return result

    return wrapped


def on_first_user_attr_insert(action):
    """A SQL listener: the signal arrives inside SQLAlchemy, in the middle of a trial's storage write."""
    fired = []

    def listener(conn, cursor, statement, parameters, context, executemany):
        if not fired and statement.startswith("INSERT INTO trial_user_attributes"):
            fired.append(True)
            action()

    return listener


PHASES = {  # where the signal lands: (module or class, attribute)
    "trial created": (optuna.samplers.RandomSampler, "before_trial"),  # the trial is running, with no worker
    "heartbeat started": (HeartbeatThread, "start"),  # a thread that only stops when told
    "build": (jumpsearch.models, "build_model"),
    "compile": (keras.Model, "compile"),
    "first step": (keras.callbacks.TerminateOnNaN, "on_batch_end"),
    "rung": (jumpsearch.study, "continues"),
    "last evaluation": (jumpsearch.training, "evaluate"),
}


@pytest.mark.parametrize("how", ["swallowed", "direct"])
@pytest.mark.parametrize("phase", [*PHASES, "storage write"])
def test_sigterm_anywhere_in_a_trial_fails_it_and_stops_the_search(
    tmp_path, write_space, monkeypatch, signals, phase, how
):
    action = swallowed_sigterm if how == "swallowed" else direct_sigterm
    space = load_space(
        write_space(TINY_SPACE.replace("epochs: 1,", "epochs: 3,") + SCHEDULED if phase == "rung" else TINY_SPACE)
    )
    storage = f"sqlite:///{tmp_path}/s.db"
    if phase == "storage write":
        listener = on_first_user_attr_insert(action)
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", listener)
    else:
        owner, name = PHASES[phase]
        monkeypatch.setattr(owner, name, once(getattr(owner, name), action, after=phase == "heartbeat started"))
    try:
        with pytest.raises(Interrupted) as stopped:
            run_search(space, trials=3, storage=storage)
    finally:
        if phase == "storage write":
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", listener)
    assert stopped.value.exit_status == 143
    study = optuna.load_study(study_name="tiny", storage=storage)
    (trial,) = study.trials  # no further trial started
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"] == "interrupted by SIGTERM" and trial.user_attrs["interrupted"]
    assert not [thread.name for thread in threading.enumerate() if "_record_heartbeat" in thread.name]


def test_a_signal_that_became_another_error_is_still_the_signal(signals):
    assert interruption(RuntimeError("no signal")) is None
    assert interruption(KeyboardInterrupt()).exit_status == 130
    swallowed_sigterm()  # nothing raised here
    with pytest.raises(Interrupted, match="SIGTERM"):
        check_interrupted()
    stop = interruption(SystemError("error return without exception set"))
    assert stop is not None and stop.name == "SIGTERM" and stop.exit_status == 143


def test_what_a_signal_breaks_where_nothing_can_raise_is_not_printed(signals, capsys):
    """A C extension that calls Python code the signal interrupts turns it into SystemError ("returned a
    result with an exception set"), which a finalizer reports to sys.unraisablehook and a C caller
    prints with sys.excepthook; a thread's error goes to threading.excepthook: before a signal all three
    print, after it none does."""

    class Failing:
        def __init__(self, error):
            self.error = error

        def __del__(self):
            raise self.error  # Python hands it to sys.unraisablehook

    def fail(error):
        raise error

    def report(error):
        Failing(error)
        sys.excepthook(type(error), error, None)
        thread = threading.Thread(target=fail, args=(error,))
        thread.start()
        thread.join()

    report(SystemError("before the signal"))
    assert capsys.readouterr().err.count("before the signal") == 3
    swallowed_sigterm()
    report(SystemError("<built-in function __import__> returned a result with an exception set"))
    assert capsys.readouterr().err == ""


def test_a_signal_waits_for_the_end_of_a_held_block_and_is_raised_there(signals):
    reached = []
    with pytest.raises(Interrupted, match="SIGTERM"):
        with errors.signals_held():
            direct_sigterm()  # kept, not raised: the block (an import, say) goes on to its end
            reached.append(True)
    assert reached == [True]


def test_a_worker_whose_signal_is_swallowed_exits_143_in_silence(tmp_path, write_space):
    """A real worker process: SIGTERM lands in a finalizer at the first training step."""
    space = load_space(write_space(TINY_SPACE))
    storage = f"sqlite:///{tmp_path}/w.db"
    job = {
        "space": space.raw,
        "source": space.source,
        "trials": 3,
        "storage": storage,
        "study_name": "tiny",
        "seed": None,
        "data_dir": None,
        "heartbeat": 30,
        "process_trials": None,
        "timeout": None,
        "log_level": 20,
    }
    script = textwrap.dedent(
        f"""
        import signal, sys, keras
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_signals import once, swallowed_sigterm
        hooked = keras.callbacks.TerminateOnNaN
        hooked.on_batch_end = once(hooked.on_batch_end, swallowed_sigterm)
        from jumpsearch._worker import main
        sys.exit(main())
        """
    )
    worker = subprocess.run(
        [sys.executable, "-c", script], input=json.dumps(job) + "\n", capture_output=True, text=True, timeout=300
    )
    assert worker.returncode == 143, worker.stderr
    assert "Exception ignored" not in worker.stderr and "Traceback" not in worker.stderr, worker.stderr
    assert READY_PREFIX in worker.stderr and "jumpsearch: error" not in worker.stderr
    (trial,) = optuna.load_study(study_name="tiny", storage=storage).trials
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted by SIGTERM"
