"""What reaches the terminal: the package logs through ``logging.getLogger(__name__)``; the command
line (and each worker process) decides here what is shown, one line per message."""

from __future__ import annotations

import logging
import sys
import warnings

import optuna

FORMAT = "jumpsearch: %(message)s"


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a progress bar or a test may have replaced it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(FORMAT))

    @property  # type: ignore[override]
    def stream(self):  # noqa: ANN201
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def configure(level: int = logging.INFO) -> None:
    """Show the package's messages at ``level`` and above on stderr as ``jumpsearch: …`` lines; keep
    Optuna and TensorFlow's Python logger to their errors (a failed trial is reported by jumpsearch in
    one line, without Optuna's traceback)."""
    logger = logging.getLogger("jumpsearch")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(level)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    # Every trial traces a new model: TensorFlow's "retracing is expensive" warning is expected here.
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.showwarning = _warning_to_debug


def _warning_to_debug(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                      file: object = None, line: str | None = None) -> None:  # fmt: skip
    """A library's warning (Optuna's, about a step that does not divide a range, say) as a DEBUG line:
    what the user must know, the package says itself in one line; -v shows the rest."""
    logging.getLogger(__name__).debug("%s: %s (%s:%d)", category.__name__, message, filename, lineno)
