"""Two automl workers on different processes share one study through a real PostgreSQL
server (started on 127.0.0.1 by the fixture, stopped in teardown): killing a worker loses
no finished trial, and a rerun with the same storage resumes the study."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from trusttango.automl import open_storage
from trusttango.data import load_data
from trusttango.evaluate import evaluate
from trusttango.models import load_model

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the ``postgres`` user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture
def postgres_url():
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    assert bins, "PostgreSQL server binaries missing: `make setup` installs the Debian package postgresql"
    bindir = Path(bins[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="tt-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", _free_port()
    run = lambda *cmd: subprocess.run(_as_postgres([str(bindir / cmd[0]), *cmd[1:]]), check=True, capture_output=True)  # noqa: E731
    run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    opts = f"-h 127.0.0.1 -p {port} -k {root}"
    run("pg_ctl", "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start")
    try:
        run("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "automl")
        yield f"postgresql://postgres@127.0.0.1:{port}/automl"
    finally:
        run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _worker(out: Path, url: str, budget: float, seed: int, *extra: str) -> subprocess.Popen:
    exe = str(Path(sys.executable).with_name("trusttango"))
    args = ["automl", "--data", "digits", "--backbones", "small_cnn", "--max-epochs", "3", "--sampler", "random"]
    args += ["--storage", url, "--study", "shared", "--out", str(out), "--budget", str(budget), "--seed", str(seed)]
    return subprocess.Popen(
        [exe, *args, *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ONE_THREAD
    )


def _finished(url: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    return study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))


def _complete(url: str) -> dict[int, list[float]]:
    return {t.number: t.values for t in _finished(url)}


def _study(url: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=open_storage(url))


def _wait_for_a_running_trial_of(worker: str, url: str, deadline: float) -> dict[int, list[float]]:
    """Poll until >= 4 trials finished, by >= 2 workers, and ``worker`` runs a trial; the finished ones."""
    done: dict[int, list[float]] = {}
    while time.time() < deadline:
        time.sleep(1)
        try:
            trials = _study(url).trials
        except KeyError:  # study not created yet
            continue
        finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        done = {t.number: t.values for t in finished}
        running = [t for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("worker") == worker]
        if len(done) >= 4 and len({t.user_attrs["worker"] for t in finished}) >= 2 and running:
            return done
    raise AssertionError(f"workers finished too few trials ({len(done)}) or {worker} ran none")


def test_three_workers_started_together_survive_a_kill_and_resume(postgres_url, tmp_path):
    """Three workers start at once on one study; one is killed mid-trial; a resume finishes the
    study: no trial lost or numbered twice, the killed trial failed exactly once, nothing left
    running, and the saved best model scores the study's best value on the validation split."""
    workers = {name: _worker(tmp_path / name, postgres_url, budget, seed)
               for name, budget, seed in (("a", 40, 0), ("b", 150, 1), ("c", 40, 2))}  # fmt: skip
    killed = f"{socket.gethostname()}:{workers['b'].pid}"
    done = _wait_for_a_running_trial_of(killed, postgres_url, time.time() + 150)
    workers["b"].send_signal(signal.SIGKILL)
    workers["b"].wait(timeout=30)
    for name in ("a", "c"):
        _, err = workers[name].communicate(timeout=200)
        assert workers[name].returncode == 0, err
    after = _complete(postgres_url)
    assert all(after.get(n) == v for n, v in done.items())  # no finished trial lost
    exe = str(Path(sys.executable).with_name("trusttango"))
    resumed = subprocess.run(
        [exe, "automl", "--resume", "--out", str(tmp_path / "a"), "--budget", "6"],
        cwd=ROOT, capture_output=True, text=True, timeout=200, env=ONE_THREAD,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    study = _study(postgres_url)
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) and optuna.trial.TrialState.RUNNING not in [t.state for t in study.trials]
    stale = [t for t in study.trials if t.user_attrs.get("worker") == killed and t.state.name == "FAIL"]
    assert len(stale) == 1 and len({t.user_attrs.get("worker") for t in study.trials if t.number in done}) >= 2
    assert all(_complete(postgres_url).get(n) == v for n, v in after.items())
    saved = load_model(tmp_path / "a" / "best_model")
    doc = json.loads((tmp_path / "a" / "search.json").read_text())
    assert doc["best"]["trial"] == study.best_trial.number and doc["best"]["weights"] == "kept"
    val = load_data("digits", seed=0).val
    assert evaluate(saved.model, val).accuracy == pytest.approx(study.best_value, abs=1e-9)


@pytest.mark.parametrize("half_finished", [False, True], ids=["fresh", "stale-trial"])
def test_workers_started_together_on_postgres_all_succeed(digits, postgres_url, half_finished):
    """Four workers set up one study on a fresh (or half-finished) PostgreSQL database at the
    same instant (before the advisory lock: "cannot connect (IntegrityError)" as Optuna's
    table creation collided); a killed worker's trial is failed and retried exactly once."""
    from storage_race import check_study, plant_stale_trial, start_together

    stale = plant_stale_trial(digits, postgres_url) if half_finished else None
    assert start_together(digits, postgres_url, 4) == ["ok"] * 4
    trials = check_study(postgres_url, stale)
    assert len(trials) == 4 + (2 if half_finished else 0)  # planted: a finished and a stale trial
