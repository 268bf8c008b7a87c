"""Worker processes on one machine, one study: Optuna's own distributed model, supervised.

``run_workers`` checks the space, the data set and the storage once, creates the study, then keeps
``workers`` processes training until the study holds its budget. Each worker is ``run_search`` in a
fresh interpreter, which it leaves after ``recycle`` trained trials (TensorFlow keeps native memory of
every model it traces; a new process gives it back) to be replaced by another. With GPUs, each worker
sees only its own through ``CUDA_VISIBLE_DEVICES``. The supervisor imports no backend: its workers say
on which device they train before the study is made, it reads progress from the storage, forwards a
SIGINT or SIGTERM to its workers (each fails its running trial with that reason), fails the trials of a
worker that died, and reports a worker's error as its own.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna

from jumpsearch.data import load_dataset
from jumpsearch.device import check_backend
from jumpsearch.errors import Interrupted, JumpsearchError, check_interrupted
from jumpsearch.progress import SearchBar
from jumpsearch.records import searched
from jumpsearch.space import SearchSpace
from jumpsearch.storage import HEARTBEAT_INTERVAL, redact, storage_url
from jumpsearch.study import create_study, fail_running, worker_name

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
MAX_CRASHES = 3  # workers that die without a word, in a row, before the supervisor gives up
ERROR_PREFIX = "jumpsearch: error: "  # how a worker reports the error that stops it
READY_PREFIX = "jumpsearch-worker-ready: "  # how a worker says its backend has started, and on which device


def gpu_ids(spec: str) -> list[str]:
    """``all`` (every GPU nvidia-smi lists) or a list such as ``0,1`` (an index may repeat)."""
    if spec != "all":
        ids = [part.strip() for part in spec.split(",") if part.strip()]
        if not ids or not all(part.isdigit() for part in ids):
            raise JumpsearchError(f"gpus={spec}: expected all or GPU indices such as 0,1")
        return ids
    smi = shutil.which("nvidia-smi")
    listed = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    ids = [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]
    if not ids:
        raise JumpsearchError("gpus=all: nvidia-smi lists no GPU on this machine")
    return ids


def _die_with_parent() -> None:
    """In a worker (Linux): receive SIGTERM when the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class _Worker:
    """One slot: the process filling it now, its GPU, and the last error line it printed."""

    gpu: str | None
    process: subprocess.Popen | None = None
    trained_at_start: int = 0
    error: str = ""
    crashes: int = 0
    device: dict[str, str] = field(default_factory=dict)  # what the worker said when ready: device, backend
    ready: threading.Event = field(default_factory=threading.Event, repr=False)  # ready, or gone
    reader: threading.Thread | None = field(default=None, repr=False)


class _Supervisor:
    """Starts worker processes, hands them their job, relays what they print, and signals them."""

    def __init__(self, slots: list[_Worker]) -> None:
        self.slots = slots
        self.job: dict[str, Any] = {}
        self.write: Any = lambda line: print(line, file=sys.stderr, flush=True)

    def spawn(self, slot: _Worker) -> None:
        """A worker that imports its backend at once and then waits for its job on stdin: started before
        the supervisor has checked the input, its start-up overlaps that check."""
        env = dict(os.environ)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        slot.error = ""
        slot.ready.clear()
        slot.device = {}
        slot.process = subprocess.Popen(
            [sys.executable, "-m", "jumpsearch._worker"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor, which forwards it once
            preexec_fn=_die_with_parent,
        )
        slot.reader = threading.Thread(target=self._relay, args=(slot, slot.process), daemon=True)
        slot.reader.start()

    def assign(self, slot: _Worker, timeout: float | None) -> None:
        assert slot.process is not None and slot.process.stdin is not None
        # A worker that has already stopped closed its end: with SIGPIPE at its default (the CLI's, for
        # `| head`), writing to it would kill the supervisor. The supervisor reads why from its status.
        default = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            slot.process.stdin.write(json.dumps({**self.job, "timeout": timeout}) + "\n")
            slot.process.stdin.close()
        except BrokenPipeError:
            pass
        finally:
            signal.signal(signal.SIGPIPE, default)

    def start(self, slot: _Worker, timeout: float | None) -> None:
        self.spawn(slot)
        self.assign(slot, timeout)

    def kill_all(self, slots: Sequence[_Worker] | None = None) -> None:
        """Stop workers that have not been given a job (they have written nothing)."""
        for slot in self.slots if slots is None else slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.kill()
                slot.process.wait()
            slot.process = None

    def wait_ready(self, gpus: Sequence[str] | None) -> str:
        """Wait until every worker has started its backend, before anything is written to the storage: a
        worker that cannot start (a broken backend, a GPU it cannot see) stops the run in one line and
        leaves no study behind. Returns where the run trains, to be said once."""
        for slot in self.slots:
            while not slot.ready.wait(POLL_SECONDS):
                check_interrupted()
            if not slot.device:  # its stderr ended before it was ready: it stopped
                assert slot.process is not None
                status = slot.process.wait()
                if slot.reader is not None:
                    slot.reader.join(timeout=5)
                raise JumpsearchError(slot.error or f"a worker stopped with status {status} before it started")
        blind = [slot for slot in self.slots if gpus and slot.device["device"] == "CPU"]
        if blind:
            raise JumpsearchError(
                f"gpus={','.join(gpus or [])}: {blind[0].device['backend']} sees no GPU there "
                f"(CUDA_VISIBLE_DEVICES={blind[0].gpu}); leave gpus out to train on the CPU"
            )
        devices = sorted({(slot.gpu or "", slot.device["device"]) for slot in self.slots})
        where = ", ".join(f"GPU {gpu}: {device}" if gpu else device for gpu, device in devices)
        if where == "CPU":
            where = "CPU (no GPU visible)"
        return f"{where} with {self.slots[0].device['backend']}"

    def _relay(self, slot: _Worker, process: subprocess.Popen) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            line = line.rstrip("\n")
            if line.startswith(ERROR_PREFIX):
                slot.error = line[len(ERROR_PREFIX) :]
            elif line.startswith(READY_PREFIX):
                slot.device = json.loads(line[len(READY_PREFIX) :])
                slot.ready.set()
            else:
                self.write(line)
        slot.ready.set()

    def signal_all(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def wait_all(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                slot.process.wait()
                if slot.reader is not None:
                    slot.reader.join(timeout=5)


def run_workers(
    space: SearchSpace,
    *,
    workers: int = 1,
    gpus: Sequence[str] | None = None,
    recycle: int | None = 20,
    trials: int | None = None,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int | None = None,
    data_dir: str | None = None,
    heartbeat: int = HEARTBEAT_INTERVAL,
    progress: bool = False,
) -> optuna.Study:
    """Search with ``workers`` processes (one per entry of ``gpus`` when given) until the study holds
    ``trials`` trained trials, or for ``timeout`` seconds; each worker process is replaced after
    ``recycle`` trained trials (None or 0: never).

    Raises JumpsearchError (bad input, or a worker's error) and Interrupted (a signal: every worker has
    failed its running trial by the time it is raised, and the study is ready to resume).
    """
    if gpus:
        workers = len(gpus)
    if workers < 1:
        raise JumpsearchError(f"workers={workers}: must be at least 1")
    check_backend()
    slots = [_Worker(gpus[i] if gpus else None) for i in range(workers)]
    supervisor = _Supervisor(slots)
    for slot in slots:
        supervisor.spawn(slot)
    bar = None
    try:
        data = load_dataset(space.data, data_dir)  # before the study: a missing data set writes nothing
        space.check(data.input_shape, data.num_classes)
        url = storage_url(storage, space.name)
        where = supervisor.wait_ready(gpus)
        study = create_study(space, url, study_name, seed, heartbeat)
        budget = trials or space.trials
        done = searched(study)
        supervisor.kill_all(slots[max(budget - done, 0) :])  # no more workers than trials left to train
        if done >= budget:
            logger.info("study %r already has %d trained trials (budget %d)", study.study_name, done, budget)
            return study
        logger.info("training on %s", where)  # once the input holds: an error stays the only line
        started = sum(slot.process is not None for slot in slots)
        if started > 1:
            logger.info("%d workers on study %r at %s", started, study.study_name, redact(url))
        supervisor.job = {
            "space": space.raw,
            "source": space.source,
            "trials": budget,
            "storage": url,
            "study_name": study.study_name,
            "seed": seed,
            "data_dir": data_dir,
            "heartbeat": heartbeat,
            "process_trials": recycle or None,
            "log_level": logging.getLogger("jumpsearch").getEffectiveLevel(),
        }
        if progress:
            bar = SearchBar(study, budget)
            supervisor.write = bar.write
        deadline = time.monotonic() + timeout if timeout else None
        for slot in slots:
            if slot.process is not None:
                slot.trained_at_start = done
                supervisor.assign(slot, timeout)
        _supervise(supervisor, study, budget, deadline, bar)
    except KeyboardInterrupt as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        supervisor.signal_all(signum)
        supervisor.wait_all()
        raise Interrupted(signum) from None
    except BaseException:
        supervisor.kill_all()
        raise
    finally:
        if bar is not None:
            bar.close()
    return study


def _fail_orphans(study: optuna.Study, process: subprocess.Popen, status: int) -> None:
    """Fail the trials a dead worker left running, naming how it died, and queue them again as a missed
    heartbeat would (``open_storage``'s callback): without this they would stay running until a later
    run's heartbeat check, and fail with no reason."""
    worker = worker_name(process.pid)
    how = f"was killed by {signal.Signals(-status).name}" if status < 0 else f"ended with status {status}"
    retry = getattr(study._storage, "get_heartbeat_stale_trial_callback", lambda: None)()
    for trial in fail_running(study, worker, {"fail_reason": f"its worker {worker} {how}", "worker_died": True}):
        logger.debug("trial %d failed: its worker %s %s", trial.number, worker, how)
        if retry is not None:
            retry(study, trial)


def _supervise(
    supervisor: _Supervisor, study: optuna.Study, budget: int, deadline: float | None, bar: SearchBar | None
) -> None:
    """Refill slots whose worker finished its share, until the budget or the deadline, with no more
    workers than trials left; stop on an error."""
    while True:
        time.sleep(POLL_SECONDS)
        check_interrupted()  # a signal whose exception a finalizer swallowed
        if bar is not None:
            bar.refresh()
        remaining = deadline - time.monotonic() if deadline is not None else None
        ended = []
        for slot in supervisor.slots:
            if slot.process is None:  # finished, and not started again
                continue
            status = slot.process.poll()
            if status is None:
                continue
            process, slot.process = slot.process, None  # handled once: started again below, or left empty
            if slot.reader is not None:
                slot.reader.join(timeout=5)
            if status not in (0, 2) and not slot.error:  # it died without failing its own trial
                _fail_orphans(study, process, status)
            if status == 2 or (status != 0 and slot.error):
                supervisor.signal_all(signal.SIGTERM)
                supervisor.wait_all()
                raise JumpsearchError(slot.error or f"a worker stopped with status {status}")
            if status != 0:
                slot.crashes += 1
                supervisor.write(f"jumpsearch: a worker ended with status {status}; starting another")
                if slot.crashes >= MAX_CRASHES:
                    supervisor.signal_all(signal.SIGTERM)
                    supervisor.wait_all()
                    raise JumpsearchError(f"{MAX_CRASHES} workers in a row ended with status {status}")
            else:
                slot.crashes = 0
            ended.append((slot, status))
        running = sum(slot.process is not None for slot in supervisor.slots)
        for slot, status in ended:
            done = searched(study)
            if status == 0 and done == slot.trained_at_start and remaining is None:
                continue  # it ended without training and without a deadline: starting it again would loop
            if running < budget - done and (remaining is None or remaining > 1):
                slot.trained_at_start = done
                supervisor.start(slot, remaining)
                running += 1
        if running == 0:
            return
