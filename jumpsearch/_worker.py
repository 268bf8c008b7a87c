"""A worker process of ``run_workers``: it imports its backend at once, then runs ``run_search`` on the
job its supervisor writes to its stdin as one JSON line (an empty stdin: nothing to do).

It reports through the storage and its stderr: one line per trial that did not train, and an error as
one ``jumpsearch: error:`` line with exit status 2. A signal fails the running trial with the signal's
name and exits with 128 + its number.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

from jumpsearch.device import backend, setup_device
from jumpsearch.errors import Interrupted, JumpsearchError, raise_interrupted
from jumpsearch.logs import configure
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search
from jumpsearch.workers import ERROR_PREFIX

logger = logging.getLogger(__name__)


def main() -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupted)
    configure()
    try:
        device = setup_device()  # quietly, while the supervisor checks the input
        line = sys.stdin.readline()
        if not line:
            return 0
        job = json.loads(line)
        configure(job.pop("log_level"))
        if device == "CPU":
            logger.info("no GPU visible to %s; training on CPU", backend())
        else:
            logger.info("training on %s (%s)", device, backend())
        space = space_from_dict(job.pop("space"), job.pop("source"))
        run_search(space, **job)
    except Interrupted as e:
        return e.exit_status
    except JumpsearchError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
