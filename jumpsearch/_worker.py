"""A worker process of ``run_workers``: ``run_search`` on the job its supervisor passed as JSON.

It reports through the storage and its stderr: one line per trial that did not train, and an error as
one ``jumpsearch: error:`` line with exit status 2. A signal fails the running trial with the signal's
name and exits with 128 + its number.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence

from jumpsearch.errors import Interrupted, JumpsearchError, raise_interrupted
from jumpsearch.logs import configure
from jumpsearch.space import space_from_dict
from jumpsearch.study import run_search
from jumpsearch.workers import ERROR_PREFIX


def main(argv: Sequence[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, raise_interrupted)
    job = json.loads(argv[0])
    configure(job.pop("log_level"))
    try:
        space = space_from_dict(job.pop("space"), job.pop("source"))
        run_search(space, **job)
    except Interrupted as e:
        return e.exit_status
    except JumpsearchError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
