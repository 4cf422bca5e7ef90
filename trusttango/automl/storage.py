"""Where trials are stored: an embedded SQLite file by default (nothing to start), a
journal file (``journal:PATH``), or any SQLAlchemy URL (PostgreSQL for many machines)."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import socket
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url

from trusttango.errors import InputError

HEARTBEAT_S = 5  # a killed worker's running trial is marked failed after ~2 missed beats
_ADVISORY_KEY = zlib.crc32(b"trusttango.automl")  # one PostgreSQL advisory lock per database
# what SQLite and PostgreSQL say when another process created the same tables (or row) first
_SCHEMA_RACE = ("already exists", "UNIQUE constraint failed", "duplicate key", "database is locked")


def masked(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print)."""
    if url.startswith("journal:"):
        return url
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: print nothing of it that could be a secret
        return url.split("@")[-1]


def default_url(out: str | Path) -> str:
    """The embedded default: ``sqlite:///OUT/study.db``."""
    return f"sqlite:///{Path(out).resolve() / 'study.db'}"


def _with_driver(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg2://`` when psycopg 3 (SQLAlchemy 2.1's default) is absent."""
    parsed = make_url(url)
    if parsed.drivername != "postgresql" or importlib.util.find_spec("psycopg") is not None:
        return url
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def _connect_args(kind: str) -> dict[str, int]:
    return {"timeout": 30} if kind == "sqlite" else {"connect_timeout": 10} if kind == "postgresql" else {}


def _local_file(url: str) -> Path | None:
    """The file behind a journal or SQLite URL (None for in-memory SQLite and server databases)."""
    if url.startswith("journal:"):
        return Path(url.removeprefix("journal:"))
    parsed = make_url(url)
    on_disk = parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:")
    return Path(parsed.database) if on_disk else None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".workers.lock"), "a") as handle:  # not Optuna's journal ".lock"
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        yield


@contextmanager
def _advisory_lock(url: str) -> Iterator[None]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(
        _with_driver(url), poolclass=sqlalchemy.pool.NullPool, connect_args=_connect_args("postgresql")
    )
    try:
        with engine.connect() as conn:  # a session lock: PostgreSQL drops it when a killed worker's connection closes
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _ADVISORY_KEY})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _ADVISORY_KEY})
    finally:
        engine.dispose()


@contextmanager
def storage_lock(url: str) -> Iterator[None]:
    """Hold the lock every trusttango worker of the storage at ``url`` takes before it creates
    tables, creates or loads the study, or fails stale trials, so that workers started at the
    same instant do these one at a time: a lock file beside a journal or SQLite file (``flock``),
    a session-level advisory lock on PostgreSQL. Other databases get no lock: there only
    Optuna's own row locks apply. Not reentrant: never nest two ``storage_lock`` of one URL."""
    path = _local_file(url)
    if path is not None:
        with _file_lock(path):
            yield
    elif make_url(url).get_backend_name() == "postgresql":
        with _advisory_lock(url):
            yield
    else:
        yield


def _open(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    kind = make_url(url).get_backend_name()
    return optuna.storages.RDBStorage(
        _with_driver(url),
        engine_kwargs={"connect_args": _connect_args(kind), "pool_pre_ping": True},
        heartbeat_interval=None if kind == "sqlite" else HEARTBEAT_S,
        grace_period=None if kind == "sqlite" else 2 * HEARTBEAT_S,
    )


def _open_retrying(url: str, attempts: int = 5) -> optuna.storages.BaseStorage:
    """:func:`_open`, tried again (after 0.1, 0.2, 0.4, 0.8 s) when the error is another process
    creating the same tables at the same instant: a process outside :func:`storage_lock` (an Optuna
    dashboard, a script calling ``optuna.load_study``) can, and then the tables exist."""
    import sqlalchemy.exc

    for attempt in range(attempts - 1):
        try:
            return _open(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError) as err:
            if not any(sign in str(err) for sign in _SCHEMA_RACE):
                raise
            time.sleep(0.1 * 2**attempt)
    return _open(url)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (creating tables if needed, under :func:`storage_lock`) the storage at ``url``;
    one-line InputError if it cannot connect."""
    try:
        with storage_lock(url):
            return _open_retrying(url)
    except Exception as err:  # SQLAlchemy / driver errors carry multi-line messages (and maybe the password)
        raise InputError(f"storage {masked(url)}: cannot connect ({type(err).__name__})") from None


def study_names(url: str) -> list[str]:
    """The studies in the storage at ``url``; none, and nothing created, when its file does not exist."""
    path = _local_file(url)
    if path is not None and not path.exists():
        return []
    return optuna.get_all_study_names(open_storage(url))


def worker_id() -> str:
    """``host:pid`` of this process, recorded on each trial it runs (user attribute ``worker``)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead_local_worker(worker: str | None) -> bool:
    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, owned by another user
        return False
    return False


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage) -> list[int]:
    """Mark FAIL the RUNNING trials whose worker process on this machine no longer exists
    (a killed worker; SQLite and journal files have no heartbeat), and enqueue their
    parameters once again, as Optuna's ``RetryFailedTrialCallback`` does. Returns their numbers.
    Trials of workers on other machines are left to the RDB heartbeat (:data:`HEARTBEAT_S`).
    Call it under :func:`storage_lock`, so that each stale trial is failed and retried once."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not _dead_local_worker(worker):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, "error", f"worker {worker} died while running this trial")
            if not storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # the RDB heartbeat of another worker failed it first
            continue
        failed.append(trial.number)
        if trial.params and "retry_of" not in trial.user_attrs:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed
