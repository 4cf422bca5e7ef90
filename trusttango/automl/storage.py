"""Where trials are stored: an embedded SQLite file by default (nothing to start), a
journal file (``journal:PATH``), or any SQLAlchemy URL (PostgreSQL for many machines)."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url

from trusttango.errors import InputError

HEARTBEAT_S = 5  # a killed worker's running trial is marked failed after ~2 missed beats


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


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """Open (creating tables if needed) the storage at ``url``; one-line InputError if it cannot connect."""
    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    try:
        kind = make_url(url).get_backend_name()
        connect = {"timeout": 30} if kind == "sqlite" else {"connect_timeout": 10} if kind == "postgresql" else {}
        return optuna.storages.RDBStorage(
            _with_driver(url),
            engine_kwargs={"connect_args": connect, "pool_pre_ping": True},
            heartbeat_interval=None if kind == "sqlite" else HEARTBEAT_S,
            grace_period=None if kind == "sqlite" else 2 * HEARTBEAT_S,
        )
    except Exception as err:  # SQLAlchemy / driver errors carry multi-line messages (and maybe the password)
        raise InputError(f"storage {masked(url)}: cannot connect ({type(err).__name__})") from None


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
    Trials of workers on other machines are left to the RDB heartbeat (:data:`HEARTBEAT_S`)."""
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker")
        if not _dead_local_worker(worker):
            continue
        storage.set_trial_user_attr(trial._trial_id, "error", f"worker {worker} died while running this trial")
        if storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL):
            failed.append(trial.number)
            if trial.params and "retry_of" not in trial.user_attrs:
                study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed
