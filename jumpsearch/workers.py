"""Worker processes on one machine, one study: Optuna's own distributed model, supervised.

``run_workers`` checks the space, the data set and the storage once, creates the study, then keeps
``workers`` processes training until the study holds its budget. Each worker is ``run_search`` in a
fresh interpreter, which it leaves after ``recycle`` trained trials (TensorFlow keeps native memory of
every model it traces; a new process gives it back) to be replaced by another: a standby, started while
the last one trained, that has imported its backend, loaded the data, opened the study and read its
trials by then (a replacement otherwise costs seconds of start-up, and more at thousands of trials, with
nothing training). With GPUs, each worker
sees only its own through ``CUDA_VISIBLE_DEVICES``. The supervisor imports no backend: its workers say
on which device they train before the study is made, it reads progress from the storage, forwards a
SIGINT or SIGTERM to its workers (each fails its running trial with that reason), fails the trials of a
worker that died, and reports a worker's error as its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from jumpsearch.data import load_dataset
from jumpsearch.device import check_backend
from jumpsearch.errors import Interrupted, JumpsearchError, check_interrupted
from jumpsearch.progress import SearchBar
from jumpsearch.records import counts_as_searched, counts_toward_recycling, searched
from jumpsearch.space import SearchSpace
from jumpsearch.storage import HEARTBEAT_INTERVAL, redact, storage_url
from jumpsearch.study import create_study, fail_running, worker_name

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.5
LOOK_SECONDS = 10.0  # between looks at which workers need a standby (trials fail, workers die)
LOOK_SHARE = 0.01  # of a core, at most, for those looks (each every poll while a worker waits for one)
MAX_CRASHES = 3  # workers that die without a word, in a row, before the supervisor gives up
ERROR_PREFIX = "jumpsearch: error: "  # how a worker reports the error that stops it
READY_PREFIX = "jumpsearch-worker-ready: "  # how a worker says its backend has started, and on which device
DONE_LINE = "jumpsearch-worker-done"  # how a worker says it has finished its share, before its exit


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
class _Process:
    """One worker process: what it said when ready (device, backend), and the last error line it printed."""

    popen: subprocess.Popen
    error: str = ""
    device: dict[str, str] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event, repr=False)  # ready, or gone
    done: bool = False  # it has finished its share and is exiting
    reader: threading.Thread | None = field(default=None, repr=False)


@dataclass
class _Worker:
    """One slot: its GPU, the process training in it now and, while that one trains, the standby that
    will replace it when it is recycled (started, its job read, waiting for its turn)."""

    gpu: str | None
    process: _Process | None = None
    standby: _Process | None = None
    trained_at_start: int = 0
    crashes: int = 0
    standby_died: bool = False  # this worker's standby stopped before its turn


class _Supervisor:
    """Starts worker processes, hands them their job, relays what they print, and signals them."""

    def __init__(self, slots: list[_Worker]) -> None:
        self.slots = slots
        self.job: dict[str, Any] = {}
        self.write: Any = lambda line: print(line, file=sys.stderr, flush=True)
        self.wake = threading.Event()  # a worker has finished its share
        self.leaving: list[_Process] = []  # workers that have finished their share and are exiting
        self.on_gpu = False  # the run trains on GPUs: a slot's next worker waits for the last one's exit

    def spawn(self, slot: _Worker, standby: bool = False) -> _Process:
        """A worker that imports its backend at once and then waits for its job on stdin: started before
        the supervisor has checked the input (or while the slot's worker trains), its start-up overlaps
        that work. A standby leaves its device alone until its turn (the worker it replaces uses it)."""
        env = dict(os.environ)
        if slot.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = slot.gpu
        popen = subprocess.Popen(
            [sys.executable, "-m", "jumpsearch._worker", *(["--standby"] if standby else [])],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor, which forwards it once
            preexec_fn=_die_with_parent,
        )
        process = _Process(popen)
        process.reader = threading.Thread(target=self._relay, args=(process,), daemon=True)
        process.reader.start()
        return process

    def _send(self, process: _Process, message: dict[str, Any], last: bool) -> None:
        assert process.popen.stdin is not None
        # A worker that has already stopped closed its end: with SIGPIPE at its default (the CLI's, for
        # `| head`), writing to it would kill the supervisor. The supervisor reads why from its status.
        default = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            process.popen.stdin.write(json.dumps(message) + "\n")
            process.popen.stdin.flush()
            if last:
                process.popen.stdin.close()
        except (BrokenPipeError, ValueError):
            with contextlib.suppress(OSError, ValueError):  # closed now, not flushed again at exit
                process.popen.stdin.close()
        finally:
            signal.signal(signal.SIGPIPE, default)

    def assign(self, slot: _Worker, timeout: float | None) -> None:
        assert slot.process is not None
        self._send(slot.process, {**self.job, "timeout": timeout}, last=True)

    def start(self, slot: _Worker, timeout: float | None) -> None:
        """Fill the slot: with its standby where it has one still alive (it opened the study and read
        its trials while the last worker trained), else with a new process."""
        standby, slot.standby = slot.standby, None
        slot.standby_died = False
        if standby is not None and standby.error and standby.popen.poll() is None:  # failed, still exiting
            standby.popen.kill()
        if standby is not None and standby.popen.poll() is None:
            slot.process = standby
            self._send(standby, {"timeout": timeout}, last=True)  # its turn
            return
        if standby is not None:  # it stopped while waiting: a new process meets whatever stopped it
            self._gone(standby)
        slot.process = self.spawn(slot)
        self.assign(slot, timeout)

    def prepare(self, slot: _Worker) -> None:
        """Start the slot's standby and give it its job at once: it imports its backend, loads the data,
        opens the study and reads its trials, then waits for its turn (``start``)."""
        if slot.standby is not None and slot.standby.popen.poll() is not None:
            self._gone(slot.standby)
            slot.standby, slot.standby_died = None, True
        if slot.standby is None and not slot.standby_died:  # one that died is not replaced until the next turn
            slot.standby = self.spawn(slot, standby=True)
            self._send(slot.standby, {**self.job, "standby": True}, last=False)

    def _gone(self, standby: _Process) -> None:
        status = self.reap(standby)
        logger.debug("a standby worker stopped with status %d before its turn: %s", status, standby.error or "-")

    def dismiss(self, slots: Sequence[_Worker] | None = None) -> None:
        """Stop standbys that will not be needed. A standby holds no trial and writes nothing (it loads
        the study without creating it, and reads), so it is killed, wherever it is in its start-up."""
        for slot in self.slots if slots is None else slots:
            standby, slot.standby = slot.standby, None
            if standby is not None:
                if standby.popen.poll() is None:
                    standby.popen.kill()
                self.reap(standby)

    def reap(self, process: _Process) -> int:
        status = process.popen.wait()
        if process.reader is not None:
            process.reader.join(timeout=5)
        if process.popen.stderr is not None and not (process.reader and process.reader.is_alive()):
            process.popen.stderr.close()
        return status

    def reap_left(self) -> None:
        """Reap the workers that have finished their share and exited since."""
        for process in [p for p in self.leaving if p.popen.poll() is not None]:
            self.reap(process)
            self.leaving.remove(process)

    def processes(self) -> list[_Process]:
        return [p for slot in self.slots for p in (slot.process, slot.standby) if p is not None] + self.leaving

    def kill_all(self, slots: Sequence[_Worker] | None = None) -> None:
        """Stop workers that have not been given a job (they have written nothing), and standbys."""
        for slot in self.slots if slots is None else slots:
            for process in (slot.process, slot.standby):
                if process is not None and process.popen.poll() is None:
                    process.popen.kill()
                    process.popen.wait()
            slot.process = slot.standby = None

    def wait_ready(self, gpus: Sequence[str] | None) -> str:
        """Wait until every worker has started its backend, before anything is written to the storage: a
        worker that cannot start (a broken backend, a GPU it cannot see) stops the run in one line and
        leaves no study behind. Returns where the run trains, to be said once."""
        started = [slot.process for slot in self.slots if slot.process is not None]
        for process in started:
            while not process.ready.wait(POLL_SECONDS):
                check_interrupted()
            if not process.device:  # its stderr ended before it was ready: it stopped
                status = self.reap(process)
                raise JumpsearchError(process.error or f"a worker stopped with status {status} before it started")
        blind = [(slot, slot.process) for slot in self.slots
                 if gpus and slot.process is not None and slot.process.device["device"] == "CPU"]  # fmt: skip
        if blind:
            slot, process = blind[0]
            raise JumpsearchError(
                f"gpus={','.join(gpus or [])}: {process.device['backend']} sees no GPU there "
                f"(CUDA_VISIBLE_DEVICES={slot.gpu}); leave gpus out to train on the CPU"
            )
        devices = sorted({(slot.gpu or "", slot.process.device["device"]) for slot in self.slots if slot.process})
        self.on_gpu = any(device != "CPU" for _, device in devices)
        where = ", ".join(f"GPU {gpu}: {device}" if gpu else device for gpu, device in devices)
        if where == "CPU":
            where = "CPU (no GPU visible)"
        return f"{where} with {started[0].device['backend']}"

    def _relay(self, process: _Process) -> None:
        assert process.popen.stderr is not None
        for line in process.popen.stderr:
            line = line.rstrip("\n")
            if line.startswith(ERROR_PREFIX):
                process.error = line[len(ERROR_PREFIX) :]
            elif line.startswith(READY_PREFIX):
                process.device = json.loads(line[len(READY_PREFIX) :])
                process.ready.set()
            elif line == DONE_LINE:
                process.done = True
                self.wake.set()
            else:
                self.write(line)
        process.ready.set()
        self.wake.set()  # it is exiting: its slot may be refilled

    def signal_all(self, signum: int) -> None:
        for process in self.processes():
            if process.popen.poll() is None:
                process.popen.send_signal(signum)

    def wait_all(self) -> None:
        for process in self.processes():
            self.reap(process)


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
        slot.process = supervisor.spawn(slot)
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
            "on_gpu": supervisor.on_gpu,  # a worker that starts later checks it sees a GPU too
        }
        if progress:
            bar = SearchBar(study, budget)
            supervisor.write = bar.write
        deadline = time.monotonic() + timeout if timeout else None
        for slot in slots:
            if slot.process is not None:
                slot.trained_at_start = done
                supervisor.assign(slot, timeout)
        _supervise(supervisor, study, budget, deadline, bar, recycle or 0)
        supervisor.wait_all()  # the last workers' exits
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
    supervisor: _Supervisor,
    study: optuna.Study,
    budget: int,
    deadline: float | None,
    bar: SearchBar | None,
    recycle: int,
) -> None:
    """Refill slots whose worker finished its share, until the budget or the deadline, with no more
    workers than trials left; stop on an error. Slots whose worker will be recycled before the budget is
    filled keep a standby ready to take over (``_keep_standbys``)."""
    again, next_look = bool(recycle), 0.0  # whether a worker waits for a standby; when to look next
    while True:
        supervisor.wake.wait(POLL_SECONDS)
        supervisor.wake.clear()
        check_interrupted()  # a signal whose exception a finalizer swallowed
        supervisor.reap_left()
        if bar is not None:
            bar.refresh()
        remaining = deadline - time.monotonic() if deadline is not None else None
        ended = []
        for slot in supervisor.slots:
            if slot.process is None:  # finished, and not started again
                continue
            status = slot.process.popen.poll()
            # Finished and still exiting: on a CPU the slot is free (its exit is reaped later); a GPU
            # holds the last worker's memory until its exit.
            if status is None and not (slot.process.done and not supervisor.on_gpu):
                continue
            process, slot.process = slot.process, None  # handled once: started again below, or left empty
            if status is None:
                supervisor.leaving.append(process)
            else:
                supervisor.reap(process)
            if process.done:  # its share trained; how its interpreter's exit went is no news
                status = 0
            if status not in (0, 2) and not process.error:  # it died without failing its own trial
                _fail_orphans(study, process.popen, status)
            if status == 2 or (status != 0 and process.error):
                supervisor.signal_all(signal.SIGTERM)
                supervisor.wait_all()
                raise JumpsearchError(process.error or f"a worker stopped with status {status}")
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
            supervisor.dismiss()
            return
        if recycle and (ended or time.monotonic() >= next_look):
            start = time.thread_time()  # the core's time, not the storage's: waits on a database cost no core
            again = _keep_standbys(supervisor, study, budget, recycle)
            spent = time.thread_time() - start  # a look reads every trial's state: ~25 ms at 10,000 trials here
            next_look = time.monotonic() + max(POLL_SECONDS if again else LOOK_SECONDS, spent / LOOK_SHARE)


def _keep_standbys(supervisor: _Supervisor, study: optuna.Study, budget: int, recycle: int) -> bool:
    """Keep a standby for each worker that will be recycled before the budget is filled (the trials left
    beyond what the running workers train before their recycling, ``recycle`` per replacement), those
    nearest their recycling first (and those that have one); stop the others (each would start only to be
    sent away). A standby
    starts once its worker has trained a trial: not beside a new worker's first trial, whose trace would
    compete with its start-up for the cores. Returns whether a worker that needs one has yet to train its
    first trial (look again at the next poll)."""
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    turns = Counter(t.user_attrs.get("worker") for t in finished if counts_toward_recycling(t))
    busy = [slot for slot in supervisor.slots if slot.process is not None]
    taken = {id(slot): turns[worker_name(slot.process.popen.pid)] for slot in busy}  # type: ignore[union-attr]
    share = sum(max(recycle - n, 0) for n in taken.values())
    beyond = budget - sum(counts_as_searched(t) for t in finished) - share
    replacements = min(len(busy), -(-beyond // recycle)) if beyond > 0 else 0
    # Those holding a standby first (a look again must not move one to a slot that has just caught up).
    nearest = sorted(busy, key=lambda slot: (slot.standby is None, -taken[id(slot)]))[:replacements]
    supervisor.dismiss([slot for slot in supervisor.slots if slot not in nearest])
    for slot in nearest:
        if taken[id(slot)]:
            supervisor.prepare(slot)
    return any(not taken[id(slot)] for slot in nearest)
