"""Optuna storages from a URL, with heartbeats so a dead worker's trial is failed and retried.

The one place that knows storage URLs: the default location, the SQLite and journal file paths inside
them, whether they exist or can be written, which a worker process cannot share, how long a server may
take to answer, which errors mean "the server did not answer", and what a storage can hold (study names)
and whose study it is (a study another tool made in the same storage is refused, never written to).
"""

from __future__ import annotations

import copy
import errno
import os
import random
import re
import time
import traceback
import unicodedata
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from jumpsearch.columns import rows
from jumpsearch.config import echo
from jumpsearch.errors import JumpsearchError

HEARTBEAT_INTERVAL = 30  # seconds between a running trial's heartbeats
GRACE_FACTOR = 4  # a running trial silent for this many heartbeats is failed and queued again
MAX_RETRY = 3
CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT = 5  # seconds a server may take to answer a connection (then the attempt fails)
STATEMENT_TIMEOUT = 120  # seconds a server may take over one statement or command
MAX_STUDY_NAME = 512  # characters of Optuna's study_name column (RDB storages); held everywhere alike
SQLITE = "sqlite:///"


def storage_url(storage: str | None, study_name: str) -> str:
    """``storage``, or the default ``sqlite:///studies/<study_name>.db`` (relative to the working directory)."""
    return storage or f"{SQLITE}studies/{study_name}.db"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def _parsed(url: str) -> Any:  # -> sqlalchemy.engine.URL
    """An RDB URL as SQLAlchemy reads it, or JumpsearchError naming it."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        return make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as e:
        raise JumpsearchError(f"storage {redact(url)}: not a storage URL ({e})") from None


def _is_sqlite(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def _in_memory(url: str) -> bool:
    """A SQLite database that lives in one process's memory (``sqlite://``, ``sqlite:///``,
    ``sqlite:///:memory:``, a ``file:…?mode=memory`` URI): nothing stored there outlives the process, and
    worker processes cannot share it."""
    parsed = _parsed(url)
    database = parsed.database or ""
    return database in ("", ":memory:") or database.startswith("file::memory:") or parsed.query.get("mode") == "memory"


def local_file(url: str) -> Path | None:
    """The file behind a SQLite URL or a journal path; None for a server or an in-memory database."""
    if "://" not in url:
        return Path(url)
    if not _is_sqlite(url) or _in_memory(url):
        return None
    return Path(_parsed(url).database)


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
        raise JumpsearchError(f"storage {url}: {target} is not writable; choose another storage")


def check_study_name(name: object) -> None:
    """Refuse, before anything is written, a study name that not every storage can hold: Optuna's RDB
    schema keeps 512 characters, PostgreSQL refuses a NUL, and no driver can write text that is not
    valid Unicode. Holding every storage to the strictest keeps a study movable between them."""
    if not isinstance(name, str) or not name:
        raise JumpsearchError(f"study name: expected a non-empty string, got {echo(name)}")
    if len(name) > MAX_STUDY_NAME:
        raise JumpsearchError(
            f"study name {echo(name)}: {len(name)} characters; a storage holds at most {MAX_STUDY_NAME}"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise JumpsearchError(f"study name {echo(name)}: not valid Unicode text") from None
    control = next((c for c in name if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        raise JumpsearchError(f"study name {echo(name)}: holds the control character {control!r}")


def require_jumpsearch_study(study: optuna.Study, url: str | None = None) -> None:
    """Refuse a study that another tool (plain Optuna, say) made in the same storage: its trials hold
    none of what jumpsearch reads, and jumpsearch must not write its space into it. A jumpsearch study
    stores its space. A study with no attribute and no trial that ran is taken as jumpsearch's: another
    jumpsearch process is creating it at this moment, or someone made it to enqueue points to try first."""
    if "space" in study.user_attrs:  # the usual case, read without the trials
        return
    # Trials, then the attributes again: a jumpsearch process stores the space before any trial runs, so
    # read in this order a study whose first trial already runs shows its space by the second read.
    ran = any(row.state != TrialState.WAITING for row in rows(study))
    attrs = study.user_attrs
    if "space" in attrs or (not attrs and not ran):
        return
    where = f" in {redact(url)}" if url else ""
    raise JumpsearchError(
        f"study {echo(study.study_name)}{where} was not made by jumpsearch (it stores no search space); "
        "choose another study name, or another storage"
    )


FULL = ("database or disk is full", "no space left on device", "disk quota exceeded", "file too large")


def storage_failure(error: BaseException) -> str | None:
    """Why a storage can take no more writes, if ``error`` (or an error behind it: Optuna wraps the
    driver's as "invalid data ... exceeding max length") says so; None for any other error, and for a
    full disk met elsewhere (a training's temporary files): only an error raised in a storage's code
    (Optuna's storages, SQLAlchemy, a database or Redis driver) speaks for the storage."""
    chain, seen = [], set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    if not any(_raised_in_storage(c) for c in chain):
        return None
    for cause in chain:
        full = isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        if full or any(words in str(cause).lower() for words in FULL):
            return "no space left on its device (disk full); free some, then run the same command to resume"
        if "disk i/o error" in str(cause).lower():  # SQLite's word for a write the system refused
            return "cannot write to it (disk I/O error: no space left, a file size limit, or a failing disk)"
    return None


STORAGE_CODE = ("/optuna/storages/", "/sqlalchemy/", "/redis/", "/psycopg", "/sqlite3/", "/pymysql/")


def _raised_in_storage(error: BaseException) -> bool:
    return any(
        any(part in frame.filename for part in STORAGE_CODE) for frame in traceback.extract_tb(error.__traceback__)
    )


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
    if _is_sqlite(url) and _in_memory(url):
        raise JumpsearchError(
            f"storage {redact(url)}: names no file, so SQLite would keep the study in this process's memory, "
            "where worker processes cannot share it and nothing outlives the command; name a file, e.g. "
            "sqlite:///studies/x.db"
        )
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
        except JumpsearchError:
            raise
        except Exception as e:
            reason = " ".join(str(e).split()) or type(e).__name__
            if isinstance(e, unreachable) and attempt + 1 < attempts:
                time.sleep(2**attempt * random.uniform(0.5, 1.0))  # racing processes draw apart
                continue
            tries = f" after {attempt + 1} tries" if attempt else ""
            raise JumpsearchError(f"storage {redact(url)}: cannot open it{tries} ({reason[:300]})") from None
    raise AssertionError("unreachable")


def _with_query(url: str, defaults: dict[str, Any]) -> str:
    """``url`` with ``defaults`` added to its query, where it does not set them itself."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode({**defaults, **query})))


def _connect_args(url: str) -> dict[str, Any]:
    """The driver's time limits, so that a server that accepts connections but never answers fails the
    command in seconds instead of hanging it: SQLite waits up to 60 s for another worker's write lock
    (rather than failing "database is locked"); libpq drivers (PostgreSQL) and MySQL's get a connect
    timeout and a limit on each statement. A setting in the URL's own query wins."""
    if _is_sqlite(url):
        return {"timeout": 60}
    parsed = _parsed(url)
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    limits: dict[str, Any] = {}
    if backend == "postgresql" and driver in ("psycopg", "psycopg2"):
        limits = {"connect_timeout": CONNECT_TIMEOUT, "options": f"-c statement_timeout={STATEMENT_TIMEOUT * 1000}"}
    elif backend == "mysql" and driver in ("mysqldb", "pymysql"):
        limits = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": STATEMENT_TIMEOUT,
                  "write_timeout": STATEMENT_TIMEOUT}  # fmt: skip
    return {k: v for k, v in limits.items() if k not in parsed.query}


def _open(url: str, heartbeat: int) -> optuna.storages.BaseStorage:
    if url.startswith(("redis://", "rediss://")):
        import redis

        # Optuna connects lazily; fail now, not mid-search, and within seconds when nothing answers.
        probe = {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": CONNECT_TIMEOUT}
        redis.Redis.from_url(_with_query(url, probe)).ping()
        bounded = _with_query(url, {"socket_connect_timeout": CONNECT_TIMEOUT, "socket_timeout": STATEMENT_TIMEOUT})
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalRedisBackend(bounded))
    if "://" not in url:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(url))
    engine: dict[str, Any] = {"connect_args": _connect_args(url)}
    if not _is_sqlite(url):
        engine["pool_pre_ping"] = True
    return optuna.storages.RDBStorage(
        url,
        engine_kwargs=engine,
        heartbeat_interval=heartbeat,
        grace_period=GRACE_FACTOR * heartbeat,
        heartbeat_stale_trial_callback=_StaleTrial(GRACE_FACTOR * heartbeat),
    )


class _StaleTrial(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a trial whose heartbeats stopped, after recording why it failed (``fail_reason``,
    ``worker_died``: its configuration did not finish training, so the retry is no duplicate of it).

    The retry does not inherit ``key`` or ``worker``: it records them when it runs, and a key recorded
    before then would make it look, to a trial sampling the same point, like one that recorded first;
    an old worker's name would let that worker's supervisor fail it as an orphan.
    """

    def __init__(self, grace: int) -> None:
        super().__init__(max_retry=MAX_RETRY)
        self.grace = grace

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        worker = trial.user_attrs.get("worker", "its worker")
        reason = f"{worker} sent no heartbeat for {self.grace} s (killed, or its machine lost)"
        _record_on_finished(study, trial, {"fail_reason": reason, "worker_died": True})
        retried = copy.deepcopy(trial)
        retried.user_attrs = {k: v for k, v in trial.user_attrs.items() if k not in ("key", "worker")}
        super().__call__(study, retried)


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
