"""A worker process of ``run_workers``: it imports its backend at once, says on stderr that it is ready
(and on which device), then runs ``run_search`` on the job its supervisor writes to its stdin as one
JSON line (an empty stdin: nothing to do).

It reports through the storage and its stderr: one line per trial that did not train, and an error as
one ``jumpsearch: error:`` line with exit status 2. A signal fails the running trial with the signal's
name and exits with 128 + its number.
"""

from __future__ import annotations

import json
import sys

from jumpsearch.device import backend, check_backend, setup_device
from jumpsearch.errors import JumpsearchError, handle_signals, interruption
from jumpsearch.logs import configure
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search
from jumpsearch.workers import ERROR_PREFIX, READY_PREFIX


def _start_backend() -> str:
    """The device, once the backend has started; a backend that cannot start is the worker's error."""
    try:
        return setup_device()
    except JumpsearchError:
        raise
    except Exception as e:
        raise JumpsearchError(f"the {check_backend()} backend failed to start: {type(e).__name__}: {e}") from None


def main() -> int:
    handle_signals()
    configure()
    try:
        device = _start_backend()  # quietly, while the supervisor checks the input
        print(READY_PREFIX + json.dumps({"device": device, "backend": backend()}), file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return 0
        job = json.loads(line)
        configure(job.pop("log_level"))
        space = space_from_dict(job.pop("space"), job.pop("source"))
        run_search(space, **job)
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
