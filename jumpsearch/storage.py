"""Optuna storages from a URL, with heartbeats so a dead worker's trial is failed and retried.

The one place that knows storage URLs: the default location, the SQLite and journal file paths inside
them, whether they exist or can be written, and which errors mean "the server did not answer".
"""

from __future__ import annotations

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
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )
