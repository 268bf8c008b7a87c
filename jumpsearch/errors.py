"""Errors a user can fix (the CLI prints them as one line and exits with status 2), and the signal that
stops a search."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any


class JumpsearchError(Exception):
    """Bad input (space file, configuration, data set, storage); the message names what and where."""


class ConfigError(JumpsearchError, ValueError):
    """A configuration that cannot be built, or a value of the wrong type or range."""


class StorageFailed(BaseException):
    """The storage takes no more writes (its disk is full, say): nothing a search does can be recorded,
    so it stops at once. Not an Exception, so that Optuna's ``catch`` of failed trials lets it through."""


class Interrupted(KeyboardInterrupt):
    """A signal asked the process to stop (SIGINT is Ctrl-C; SIGTERM comes from schedulers and container
    platforms). The running trial is failed with it as the reason, and the study stays resumable."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """The shell's convention: 128 + the signal's number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


_pending: int | None = None  # the signal that asked this process to stop, once one has
_held = False  # a signal is noted, not raised, until the code that holds signals lets them go


def raise_interrupted(signum: int, frame: object) -> None:
    """A signal handler: stop the running code as Ctrl-C would, naming the signal. Later signals are
    ignored, so that a second Ctrl-C cannot cut short the recording of the first.

    The exception lands in whatever code runs at that moment, and some code swallows it (a ``__del__``,
    a garbage-collector callback, a C extension that turns it into another error): the signal is kept
    here too, and ``check_interrupted`` raises it again at the package's safe points. While signals are
    held (``hold_signals``), it is only kept."""
    global _pending
    _pending = signum
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    if not _held:
        raise Interrupted(signum)


def hold_signals(hold: bool) -> None:
    """Hold signals (keep them for ``check_interrupted``) or let them raise again. A search holds them
    between two trials, while Optuna records one, asks for the next and starts its heartbeat thread:
    cut short there, a heartbeat thread started and never stopped keeps the trial alive and the process
    from exiting. Letting go does not raise a held signal: call ``check_interrupted``."""
    global _held
    _held = hold


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold signals for the block, then raise one that came meanwhile (unless they were held already,
    by an outer block). For code a signal must not cut in two: the first import of the backend, whose
    C extensions turn an exception raised inside them into a SystemError, or leave a module half made."""
    global _held
    before = _held
    _held = True
    try:
        yield
    finally:
        _held = before
    if not before:
        check_interrupted()


def check_interrupted() -> None:
    """Raise Interrupted again if a signal came and its first exception was swallowed on the way."""
    if _pending is not None:
        raise Interrupted(_pending)


def interruption(error: BaseException) -> Interrupted | None:
    """The signal behind ``error``: Interrupted itself, any error raised once a signal had come (a C
    extension interrupted mid-call reports SystemError, a storage driver its own error), or a bare
    KeyboardInterrupt (SIGINT); None for an error no signal caused."""
    if isinstance(error, Interrupted):
        return error
    if _pending is not None:
        return Interrupted(_pending)
    return Interrupted(signal.SIGINT) if isinstance(error, KeyboardInterrupt) else None


def _quiet_after_a_signal(hook: Any) -> Any:
    """``hook`` (sys.unraisablehook, sys.excepthook or threading.excepthook), silent once a signal has
    come: what a finalizer, a garbage-collector callback, a C extension or a thread whose work the
    signal cut short prints then is the signal's wake (its exception, or the SystemError a C extension
    made of it), and the CLI says in one line what stopped it."""

    def quiet(*args: Any) -> None:
        error = args[1] if len(args) > 1 else args[0].exc_value
        if _pending is None and not isinstance(error, Interrupted):
            hook(*args)

    return quiet


def handle_signals() -> None:
    """Make SIGINT and SIGTERM raise Interrupted in this process (the main thread), and keep the
    tracebacks of what they interrupt ("Exception ignored in ...", a C extension's printed error, a
    thread's) off the terminal."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupted)
    sys.unraisablehook = _quiet_after_a_signal(sys.__unraisablehook__)
    sys.excepthook = _quiet_after_a_signal(sys.__excepthook__)
    threading.excepthook = _quiet_after_a_signal(threading.__excepthook__)
