"""Optuna storages from a URL, with heartbeats so a dead worker's trial is failed and retried.

The one place that knows storage URLs: the default location, the SQLite and journal file paths inside
them, whether they exist or can be written, and which errors mean "the server did not answer".
"""

from __future__ import annotations

import errno
import os
import random
import re
import time
import warnings
from pathlib import Path

import optuna

from jumpsearch.errors import JumpsearchError

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_FACTOR = 4  # a running trial silent for this many heartbeats is failed and queued again
MAX_RETRY = 3
CONNECT_ATTEMPTS = 3
SQLITE = "sqlite:///"


def storage_url(storage: str | None, study_name: str) -> str:
    """``storage``, or the default ``sqlite:///studies/<study_name>.db`` (relative to the working directory)."""
    return storage or f"{SQLITE}studies/{study_name}.db"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def local_file(url: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for a server or an in-memory database."""
    if url.startswith(SQLITE):
        path = url[len(SQLITE) :]
        return Path(path) if path and path != ":memory:" else None
    return Path(url) if "://" not in url else None


def require_existing(url: str) -> None:
    """Refuse a SQLite or journal file that does not exist, rather than create an empty one by reading."""
    path = local_file(url)
    if path is not None and not path.is_file():
        raise JumpsearchError(f"storage {url}: no such file (has a search run there yet?)")


def _prepare_file(url: str, path: Path) -> None:
    """Make the file's folder, and say plainly when it, or the file, cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise JumpsearchError(f"storage {url}: cannot create the folder {path.parent} ({e.strerror})") from None
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise JumpsearchError(f"storage {url}: {target} is not writable; choose another --storage")


FULL = ("database or disk is full", "no space left on device", "disk quota exceeded", "file too large")


def storage_failure(error: BaseException) -> str | None:
    """Why a storage can take no more writes, if ``error`` (or an error behind it: Optuna wraps the
    driver's as "invalid data ... exceeding max length") says so; None for any other error."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        if full or any(words in str(cause).lower() for words in FULL):
            return "no space left on its device (disk full); free some, then run the same command to resume"
        if "disk i/o error" in str(cause).lower():  # SQLite's word for a write the system refused
            return "cannot write to it (disk I/O error: no space left, a file size limit, or a failing disk)"
        cause = cause.__cause__ or cause.__context__
    return None


def _unreachable() -> tuple[type[BaseException], ...]:
    """Errors worth another try, by type: the server did not answer, or another process was creating the
    same database's tables at the same moment (Optuna's schema set-up is not atomic)."""
    import sqlalchemy.exc

    errors: list[type[BaseException]] = [
        ConnectionError, TimeoutError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError,
    ]  # fmt: skip
    try:
        import redis.exceptions

        errors += [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError]
    except ImportError:
        pass
    return tuple(errors)


def open_storage(
    url: str, heartbeat: int = HEARTBEAT_INTERVAL, attempts: int = CONNECT_ATTEMPTS
) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite, postgresql, mysql), ``redis://…`` or a ``.log`` journal file path.

    A server that does not answer is tried ``attempts`` times, waiting 1, 2, 4… seconds between; then
    JumpsearchError names the URL. Nothing is written to a storage that could not be opened.
    ``heartbeat`` is the seconds between a running trial's heartbeats (RDB storages); a trial silent for
    four of them is failed and queued again.
    """
    path = local_file(url)
    if path is not None:
        if "://" not in url and not url.endswith(".log"):
            raise JumpsearchError(
                f"storage {url}: expected a URL such as sqlite:///studies/x.db, postgresql://host/db, "
                "redis://host:6379 or a journal file path ending in .log"
            )
        _prepare_file(url, path)
    unreachable = _unreachable()
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; the warning is noise
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _open(url, heartbeat)
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            if isinstance(e, unreachable) and attempt + 1 < attempts:
                time.sleep(2**attempt * random.uniform(0.5, 1.0))  # racing processes draw apart
                continue
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise JumpsearchError(f"storage {redact(url)}: cannot open it{tries} ({reason[:300]})") from None
    raise AssertionError("unreachable")


def _open(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    if url.startswith("redis://"):
        import redis

        redis.Redis.from_url(url).ping()  # Optuna connects lazily; fail now, not mid-search
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(url))
    if "://" not in url:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    # SQLite: writers from several local workers wait for the lock instead of failing "database is locked".
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=heartbeat,
        grace_period=GRACE_FACTOR * heartbeat,
        heartbeat_stale_trial_callback=_StaleTrial(GRACE_FACTOR * heartbeat),
    )


class _StaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeats stopped, after recording why it failed (``fail_reason``,
    ``worker_died``: its configuration did not finish training, so the retry is no duplicate of it)."""

    def __init__(self, grace: int) -> None:
        super().__init__(max_retry=MAX_RETRY)
        self.grace = grace

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        worker = trial.user_attrs.get("worker", "its worker")
        reason = f"{worker} sent no heartbeat for {self.grace} s (killed, or its machine lost)"
        _record_on_finished(study, trial, {"fail_reason": reason, "worker_died": True})
        super().__call__(study, trial)


def _record_on_finished(study: optuna.Study, trial: optuna.trial.FrozenTrial, attrs: dict[str, object]) -> None:
    """User attributes on a trial Optuna has already failed: its storage API refuses any write to a finished
    trial, so they go into the RDB storage's table directly (the one process that failed it does this)."""
    import json

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rdb = getattr(study._storage, "_backend", study._storage)  # under Optuna's cache
    with _create_scoped_session(rdb.scoped_session, True) as session:
        for key, value in attrs.items():
            if key not in trial.user_attrs:
                row = models.TrialUserAttributeModel(trial_id=trial._trial_id, key=key, value_json=json.dumps(value))
                session.add(row)
