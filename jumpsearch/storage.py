"""Optuna storages from a URL, with heartbeats so a dead worker's trial is failed and retried."""

from __future__ import annotations

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


def default_storage(name: str) -> str:
    """``sqlite:///studies/<name>.db``, relative to the working directory."""
    return f"sqlite:///studies/{name}.db"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(
    url: str, heartbeat: int = HEARTBEAT_INTERVAL, attempts: int = CONNECT_ATTEMPTS
) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite, postgresql, mysql), ``redis://…`` or a ``.log`` journal file path.

    A server that does not answer is tried ``attempts`` times, waiting 1, 2, 4… seconds between; then
    JumpsearchError names the URL. Nothing is written to a storage that could not be opened.
    ``heartbeat`` is the seconds between a running trial's heartbeats (RDB storages); a trial silent for
    four of them is failed and queued again.
    """
    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; the warning is noise
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return _open(url, heartbeat)
        except JumpsearchError:
            raise
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            unreachable = any(word in reason.lower() for word in ("connect", "refused", "timeout", "timed out"))
            if unreachable and attempt + 1 < attempts:
                time.sleep(2**attempt)
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
        if not url.endswith(".log"):
            raise JumpsearchError(
                f"storage {url}: expected a URL such as sqlite:///studies/x.db, postgresql://host/db, "
                "redis://host:6379 or a journal file path ending in .log"
            )
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    # SQLite: writers from several local workers wait for the lock instead of failing "database is locked".
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=heartbeat,
        grace_period=GRACE_FACTOR * heartbeat,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )
