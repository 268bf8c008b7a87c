"""What reaches the terminal: the package logs through ``logging.getLogger(__name__)``; the command
line (and each worker process) decides here what is shown, one line per message."""

from __future__ import annotations

import logging
import sys
import warnings

import optuna

FORMAT = "jumpsearch: %(message)s"


def configure(level: int = logging.INFO) -> None:
    """Show the package's messages at ``level`` and above on stderr as ``jumpsearch: …`` lines; keep
    Optuna to its errors (a failed trial is reported by jumpsearch in one line, without Optuna's
    traceback) and the backend's Python warnings out of the way."""
    logger = logging.getLogger("jumpsearch")
    if not any(getattr(h, "_jumpsearch", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._jumpsearch = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
