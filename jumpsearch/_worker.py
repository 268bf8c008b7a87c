"""A worker process of ``run_workers``: it imports its backend at once, says on stderr that it is ready
(and on which device), then runs ``run_search`` on the job its supervisor writes to its stdin as one
JSON line (an empty stdin: nothing to do). A standby's job says ``"standby": true``: it opens the study
and waits for a second line, its turn (see ``_standby``).

It reports through the storage and its stderr: one line per trial that did not train, and an error as
one ``jumpsearch: error:`` line with exit status 2. A signal fails the running trial with the signal's
name and exits with 128 + its number.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from jumpsearch.device import backend, check_backend, setup_device
from jumpsearch.errors import JumpsearchError, handle_signals, interruption
from jumpsearch.logs import configure
from jumpsearch.records import searched
from jumpsearch.space import SearchSpace, space_from_dict
from jumpsearch.study import WORKER, _open_search, _search, run_search
from jumpsearch.workers import DONE_LINE, ERROR_PREFIX, READY_PREFIX

logger = logging.getLogger(__name__)


def _start_backend() -> str:
    """The device, once the backend has started; a backend that cannot start is the worker's error."""
    try:
        return setup_device()
    except JumpsearchError:
        raise
    except Exception as e:
        raise JumpsearchError(f"the {check_backend()} backend failed to start: {type(e).__name__}: {e}") from None


def _check_device(device: str, on_gpu: bool) -> None:
    """A worker started after the run's first ones must train where they do: a backend that finds its GPU
    taken (JAX, say, where another process holds it) may start on the CPU instead."""
    if on_gpu and device == "CPU":
        raise JumpsearchError(f"a worker started during the run sees no GPU ({backend()}), as the first ones did")


def _standby(space: SearchSpace, job: dict[str, Any]) -> None:
    """Open the study and read its trials, then wait for the supervisor's word: a second line on stdin
    (``{"timeout": seconds}``) to search, or its end to leave without training. The data set, the study
    and Optuna's cache of its trials (seconds at thousands of trials) are then ready when the worker
    this one replaces is recycled; its first trial reads only what changed since."""
    opening = {key: job.pop(key) for key in ("storage", "study_name", "seed", "data_dir", "heartbeat")}
    on_gpu = job.pop("on_gpu", False)
    if not on_gpu:  # on a CPU there is nothing to wait for; on a GPU, the worker it replaces holds it
        _start_backend()
    study, data = _open_search(space, **opening, load_only=True)
    study.get_trials(deepcopy=False)
    logger.debug("standby %s: study %r read (%d trials trained); waiting for its turn", WORKER, study.study_name,
                 searched(study))  # fmt: skip
    turn = sys.stdin.readline()
    if turn:
        logger.debug("standby %s takes its turn", WORKER)
        _check_device(_start_backend(), on_gpu)
        _search(study, space, data, storage=opening["storage"], seed=opening["seed"], **job, **json.loads(turn))


def main() -> int:
    handle_signals()
    configure()
    try:
        # Quietly, while the supervisor checks the input; a standby only imports its backend.
        device = "" if "--standby" in sys.argv[1:] else _start_backend()
        print(READY_PREFIX + json.dumps({"device": device, "backend": backend()}), file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        job = json.loads(line)
        configure(job.pop("log_level"))
        space = space_from_dict(job.pop("space"), job.pop("source"))
        if job.pop("standby", False):
            _standby(space, job)
        else:
            _check_device(device, job.pop("on_gpu", False))
            run_search(space, **job)
        # Said before the interpreter's exit, which takes a second with a backend loaded: the supervisor
        # hands the slot to the standby meanwhile.
        print(DONE_LINE, file=sys.stderr, flush=True)
    except BaseException as e:
        stop = interruption(e)  # whatever error a signal became on its way out
        if stop is not None:
            return stop.exit_status
        if not isinstance(e, JumpsearchError):
            raise
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    # Run as ``python -m jumpsearch._worker``, this file is ``__main__``; the module proper (whose loggers
    # are configured under "jumpsearch") is imported and run instead.
    from jumpsearch._worker import main as worker_main

    sys.exit(worker_main())
