"""Optuna storages from a URL, with heartbeats so a dead worker's trial is failed and retried."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import optuna

from jumpsearch.errors import JumpsearchError

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_PERIOD = 120  # a running trial silent this long is failed and queued again
MAX_RETRY = 3


def default_storage(name: str) -> str:
    """``sqlite:///studies/<name>.db``, relative to the working directory."""
    return f"sqlite:///studies/{name}.db"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite, postgresql, mysql), ``redis://…`` or a ``.log`` journal file path.

    Raises JumpsearchError naming the URL when it cannot be reached; nothing is written then.
    """
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; the warning is noise here
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _open(url)
    except JumpsearchError:
        raise
    except Exception as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise JumpsearchError(f"storage {redact(url)}: cannot open it ({reason[:300]})") from None


def _open(url: str) -> optuna.storages.BaseStorage:
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
    return optuna.storages.RDBStorage(
        url,
        heartbeat_interval=HEARTBEAT_INTERVAL,
        grace_period=GRACE_PERIOD,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
    )
