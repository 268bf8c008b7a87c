"""Errors a user can fix (the CLI prints them as one line and exits with status 2), and the signal that
stops a search."""

from __future__ import annotations

import signal


class JumpsearchError(Exception):
    """Bad input (space file, configuration, data set, storage); the message names what and where."""


class ConfigError(JumpsearchError, ValueError):
    """A configuration that cannot be built, or a value of the wrong type or range."""


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


def raise_interrupted(signum: int, frame: object) -> None:
    """A signal handler: stop the running code as Ctrl-C would, naming the signal. Later signals are
    ignored, so that a second Ctrl-C cannot cut short the recording of the first."""
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)
