"""Workers that set up one shared study at the same instant (spawned processes released by one
barrier: a forked child of a process that ran torch ops can hang in its first torch op), and
a study that holds a killed worker's RUNNING trial: helpers for the SQLite and PostgreSQL
tests of ``AnytimeSearch.study``."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket

import optuna

from trusttango.automl import AnytimeSearch, open_storage
from trusttango.data.base import Splits


def _join(splits: Splits, url: str, barrier, results) -> None:  # noqa: ANN001 (multiprocessing proxies)
    search = AnytimeSearch(splits, budget_s=30.0, sampler="random", storage=url, quick_start=False)
    barrier.wait()
    try:
        search.study().optimize(lambda trial: 0.5, n_trials=1)
        results.put("ok")
    except BaseException as err:  # report every failure to the parent, which asserts
        results.put(f"{type(err).__name__}: {err}")


def start_together(splits: Splits, url: str, workers: int) -> list[str]:
    """``workers`` processes open ``url``'s study at one instant and each runs one trial; what each reported."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_join, args=(splits, url, barrier, results)) for _ in range(workers)]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    return reports


def plant_stale_trial(splits: Splits, url: str) -> int:
    """One finished trial and one RUNNING trial whose worker (a process on this machine) is dead; its number."""
    study = AnytimeSearch(splits, budget_s=30.0, sampler="random", storage=url, quick_start=False).study()
    study.optimize(lambda trial: 0.5, n_trials=1)
    dead = mp.get_context("fork").Process(target=os.getpid)
    dead.start()
    dead.join()
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)})
    trial.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    return trial.number


def check_study(url: str, stale: int | None) -> list[optuna.trial.FrozenTrial]:
    """Assert the study is whole: no RUNNING trial, unique numbers, the stale trial failed and retried once."""
    trials = optuna.load_study(study_name="automl", storage=open_storage(url)).trials
    numbers = [t.number for t in trials]
    assert len(numbers) == len(set(numbers)) and optuna.trial.TrialState.RUNNING not in [t.state for t in trials]
    failed = [t.number for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed == ([] if stale is None else [stale]), failed
    retries = [t for t in trials if "retry_of" in t.user_attrs]
    assert [t.user_attrs["retry_of"] for t in retries] == failed
    return trials
