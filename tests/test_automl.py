"""AutoDL pillar: ALC on hand-computed curves, the search space, the anytime runner on
digits (budgets of seconds), pruning, ensembles, multi-objective, warm start, the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from sklearn.metrics import roc_auc_score

from trusttango.automl import (
    AnytimeSearch,
    LearningCurve,
    alc,
    make_sampler,
    masked,
    meta_features,
    nauc,
    open_storage,
    space_for,
    suggest,
    time_transform,
    to_configs,
)
from trusttango.automl.storage import storage_lock
from trusttango.errors import InputError
from trusttango.models import build_model, config_for, load_model

ROOT = Path(__file__).resolve().parents[1]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # budgets of seconds: no thread oversubscription on a shared CPU
L21 = math.log(21.0)  # log(1 + 1200 / 60)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Timed searches run on one intra-op thread (two threads on a busy 2-core box can be 40x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------- NAUC and ALC (hand-computed)


def test_nauc_hand_computed_two_classes():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.4, 0.35, 0.8])  # class 1: 3 of 4 (pos, neg) pairs ordered -> AUC 0.75
    scores = np.stack([1 - p1, p1], 1)
    assert nauc(y, scores) == pytest.approx(2 * 0.75 - 1)


def test_nauc_ties_get_average_ranks():
    y = np.array([1, 0, 0])
    col = np.array([0.5, 0.5, 0.2])  # positive ties one negative (1/2), beats the other (1) -> 0.75
    scores = np.stack([1 - col, col], 1)
    # class 1: 0.75; class 0: positives {0.5, 0.8} vs negative 0.5: (0.5 + 1) / 2 = 0.75
    assert nauc(y, scores) == pytest.approx(0.5)
    assert roc_auc_score(y == 1, col) == pytest.approx(0.75)  # independent cross-check


def test_nauc_skips_columns_without_positives_or_negatives(rng):
    y = rng.integers(0, 2, 50)
    scores = rng.random((50, 3))  # class 2 never occurs: skipped
    expected = 2 * np.mean([roc_auc_score(y == k, scores[:, k]) for k in (0, 1)]) - 1
    assert nauc(y, scores) == pytest.approx(expected)
    onehot = np.stack([y == 0, y == 1, np.ones(50, bool)], 1)  # column 2 all positive: skipped
    assert nauc(onehot, scores) == pytest.approx(expected)
    assert nauc(np.zeros(5, int), rng.random((5, 2))) == 0.0  # no column qualifies


def test_alc_step_integral_hand_computed():
    a, b = math.log(2) / L21, math.log(6) / L21  # t = 60 s and 300 s
    assert time_transform(60.0) == pytest.approx(a)
    assert alc([60.0], [0.5]) == pytest.approx((1 - a) * 0.5)
    assert alc([60.0, 300.0], [0.4, 0.8]) == pytest.approx((b - a) * 0.4 + (1 - b) * 0.8)
    assert alc([0.0], [0.7]) == pytest.approx(0.7)
    assert alc([], []) == 0.0


def test_alc_drops_predictions_after_budget():
    assert alc([60.0, 1300.0], [0.4, 0.9]) == pytest.approx(alc([60.0], [0.4]))
    assert alc([30.0, 90.0], [0.5, 0.9], budget=60.0) == pytest.approx(alc([30.0], [0.5], budget=60.0))
    curve = LearningCurve(budget=10.0)
    y, p = np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])
    assert curve.add(2.0, y, p) == pytest.approx(1.0)
    assert curve.add(11.0, y, p) is None
    assert curve.times == [2.0]
    assert curve.alc == pytest.approx(1 - math.log1p(2 / 60) / math.log1p(10 / 60))


def test_learning_curve_png(tmp_path):
    curve = LearningCurve(budget=100.0, times=[5.0, 40.0], scores=[0.3, 0.7])
    path = curve.plot(tmp_path / "lc.png", title="toy")
    assert path.read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- search space


def test_space_defaults_from_data_and_valid_models(digits):
    space = space_for(digits.train)
    assert space.side == 8 and space.modality == "image" and space.fusions == ("none",)
    model_opts, train_opts = to_configs(space.default, space)
    assert model_opts["backbone"] == "small_cnn" and model_opts["input_size"] == 8
    sampler = optuna.samplers.RandomSampler(seed=1)
    study = optuna.create_study(sampler=sampler)
    for _ in range(6):  # every sampled point builds a model that runs on the data
        model_opts, train_opts = to_configs(suggest(study.ask(), space), space)
        assert model_opts["input_size"] <= 64
        model = build_model(config_for(digits.train.input_shape, 10, **model_opts), seed=0).eval()
        assert model(digits.test.x[:2]).shape == (2, 10)
    with pytest.raises(InputError, match="unknown backbone"):
        space_for(digits.train, backbones=("nope",))


def test_samplers_and_bad_names():
    assert isinstance(make_sampler("evolution", 0), optuna.samplers.NSGAIISampler)
    assert isinstance(make_sampler("cmaes", 0), optuna.samplers.CmaEsSampler)
    with pytest.raises(InputError, match="unknown sampler"):
        make_sampler("grid", 0)
    with pytest.raises(InputError, match="single-objective"):
        make_sampler("cmaes", 0, multi_objective=True)


def test_storage_that_cannot_connect_hides_password():
    url = "postgresql://alice:s3cret@127.0.0.1:1/studies"
    with pytest.raises(InputError) as err:
        open_storage(url)
    message = str(err.value)
    assert "s3cret" not in message and "127.0.0.1:1/studies" in message and "\n" not in message
    assert masked(url) == "postgresql://alice:***@127.0.0.1:1/studies"


def test_tables_created_by_another_process_at_the_same_instant_are_tried_again(tmp_path, monkeypatch):
    """A process outside the storage lock (an Optuna dashboard, a script calling optuna.load_study)
    can create the tables at the instant a worker does; the worker's creation then fails (seen:
    IntegrityError on alembic_version, 3 such processes beside 3 workers) and is tried again,
    finding the tables. An error of another kind (a refused connection) is not tried again."""
    import sqlalchemy.exc

    from trusttango.automl import storage

    url, real, calls = f"sqlite:///{tmp_path / 'study.db'}", storage._open, []

    def beaten_to_it(target: str) -> optuna.storages.BaseStorage:
        calls.append(target)
        if len(calls) == 1:
            optuna.storages.RDBStorage(target)  # the other process creates the tables first
            cause = Exception("UNIQUE constraint failed: alembic_version.version_num")
            raise sqlalchemy.exc.IntegrityError("INSERT INTO alembic_version", {}, cause)
        return real(target)

    monkeypatch.setattr(storage, "_open", beaten_to_it)
    assert optuna.get_all_study_names(open_storage(url)) == [] and len(calls) == 2

    def refused(target: str) -> optuna.storages.BaseStorage:
        calls.append(target)
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception("connection refused"))

    calls.clear()
    monkeypatch.setattr(storage, "_open", refused)
    with pytest.raises(InputError, match="cannot connect"):
        open_storage(url)
    assert len(calls) == 1


# ---------------------------------------------------------------- the anytime runner


@pytest.fixture(scope="module")
def digits_search(digits, tmp_path_factory):
    """One real 12-second TPE search on digits, stored in an SQLite file."""
    url = f"sqlite:///{tmp_path_factory.mktemp('automl') / 'study.db'}"
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 4))
    search = AnytimeSearch(digits, budget_s=12.0, sampler="tpe", storage=url, space=space, top_k=3)
    return search, search.run(), url


def test_runner_is_anytime_and_honours_budget(digits_search):
    search, result, _ = digits_search
    curve = result.curve
    assert len(curve.times) >= 1 and all(t <= 12.0 for t in curve.times)
    assert curve.times == sorted(curve.times)
    assert result.elapsed_s < 12.0 + 12.0  # the run stops by itself (slack: one epoch + test prediction, busy CPU)
    assert result.best is not None and result.trials_run >= 1
    assert curve.scores[-1] > 0.8  # NAUC of the best prediction on real digits
    assert 0 < curve.alc < curve.scores[-1]


def test_quick_start_scores_first_and_emissions_follow_validation(digits_search):
    _, result, _ = digits_search
    emitted = result.emissions
    assert emitted[0]["trial"] == -1  # the quick-start model (not an Optuna trial) made the first prediction
    assert emitted[0]["time_s"] < 0.05 * 12.0 + 3.0  # within its share of T (plus one test prediction of slack)
    assert [e["time_s"] for e in emitted] == result.curve.times
    val = [e["val_accuracy"] for e in emitted]
    assert np.all(np.diff(val) > 0)  # a new prediction only when validation accuracy improved


def test_checkpoints_inside_epochs_emit_improving_predictions(digits, monkeypatch):
    """With a checkpoint due at every step, a one-epoch trial emits many times within its epoch."""
    monkeypatch.setattr(AnytimeSearch, "checked", lambda self, cost_s: None)
    monkeypatch.setattr("trusttango.automl.runner.FIRST_CHECK_S", 0.0)  # due from the start, however fast the CPU
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 1), batch_sizes=(16,))
    search = AnytimeSearch(digits, budget_s=10.0, sampler="random", space=space, quick_start=False, prune=False)
    result = search.run()
    first = [e for e in result.emissions if e["trial"] == 0]
    assert len(first) > 1  # one epoch, several predictions: checkpoints inside the epoch
    assert np.all(np.diff([e["val_accuracy"] for e in first]) > 0)
    assert result.curve.scores[-1] > result.curve.scores[0]


def test_every_trial_is_stored(digits_search):
    _, result, url = digits_search
    stored = optuna.load_study(study_name="automl", storage=url)
    finished = [t for t in stored.trials if t.state.is_finished()]
    assert len(finished) == len(result.study.trials) >= 1
    assert stored.trials[0].params["backbone"] == "small_cnn"  # the enqueued fast default went first
    assert stored.user_attrs["meta_features"]["classes"] == 10


def test_ensemble_of_top_k(digits_search, digits):
    from trusttango.automl import compare, ensemble_proba

    _, result, _ = digits_search
    report = compare(result.top, digits.test)
    assert report["k"] == len(result.top) >= 1
    assert report["single_test_accuracy"] > 0.5
    probs = ensemble_proba(result.top, digits.test)
    assert probs.shape == (len(digits.test), 10) and np.allclose(probs.sum(1).numpy(), 1, atol=1e-5)
    assert report["trials"][0] == result.top[0].trial


def test_pruning_from_learning_curve(digits):
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(3, 3), lr=(1e-4, 1.1e-4))
    pruner = optuna.pruners.ThresholdPruner(lower=0.99)  # digits after one epoch is below 99 %
    result = AnytimeSearch(digits, budget_s=4.0, sampler="random", space=space, pruner=pruner).run()
    pruned = [t for t in result.study.trials if t.state == optuna.trial.TrialState.PRUNED and t.intermediate_values]
    assert pruned and all(len(t.intermediate_values) == 1 for t in pruned)  # stopped after its first epoch


def test_multi_objective_pareto_front(digits, tmp_path):
    from trusttango.automl.results import write_results

    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 3))
    search = AnytimeSearch(digits, budget_s=8.0, sampler="evolution", space=space, objective="accuracy+robustness")
    result = search.run()
    doc = write_results(result, digits, tmp_path, {"data": "digits", "budget_s": 8.0})
    front = doc["pareto"]
    assert front and all(0 <= r["fgsm_accuracy"] <= 1 for r in front)
    values = [(r["val_accuracy"], r["fgsm_accuracy"]) for r in front]
    for a in values:  # no front member dominates another
        assert not any(b[0] >= a[0] and b[1] >= a[1] and b != a for b in values)
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "pareto.csv").exists()


def test_fgsm_lowers_accuracy(digits_model, digits):
    from trusttango.automl import fgsm_accuracy
    from trusttango.train import accuracy

    clean = accuracy(digits_model, digits.test.subset(np.arange(256)))
    assert fgsm_accuracy(digits_model, digits.test, eps=0.1) < clean - 0.1


def test_warm_start_enqueues_best_of_similar_study(digits, tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 2))
    first = AnytimeSearch(digits, budget_s=4.0, sampler="random", storage=url, study_name="a", space=space).run()
    best = max((t for t in first.study.trials if t.values), key=lambda t: t.values[0])
    second = AnytimeSearch(digits, 1e-3, "random", url, "b", space, warm_start=1).study()
    waiting = [t for t in second.trials if t.state == optuna.trial.TrialState.WAITING]
    assert waiting[0].system_attrs["fixed_params"] == best.params  # experience first
    assert len(waiting) == 1 + (best.params != space.default)  # then the default point (once)
    assert second.user_attrs["warm_start_from"] == ["a"]  # recorded: which experience seeded it
    features = meta_features(digits.train)
    assert features["modality"] == "image" and features["balance"] > 0.99


# ---------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("trusttango"))
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=ROOT, timeout=300, env=ONE_THREAD)


def test_cli_automl_writes_loadable_model_and_resumes(tmp_path):
    out = tmp_path / "run"
    base = ["automl", "--data", "digits", "--backbones", "small_cnn", "--max-epochs", "3", "--out", str(out)]
    done = _cli(*base, "--budget", "10", "--sampler", "random")
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "search.json").read_text())
    assert doc["status"] == "ok" and 0 < doc["alc"] < 1 and doc["best"]["model"]["backbone"] == "small_cnn"
    for name in ("trials.csv", "learning_curve.png", "learning_curve.json", "best_model/config.json"):
        assert (out / name).exists(), name
    evaluated = _cli("evaluate", str(out / "best_model"), "--data", "digits", "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(doc["best"]["test_accuracy"])
    before = doc["trials_in_study"]
    resumed = _cli("automl", "--resume", "--out", str(out), "--budget", "6")
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads((out / "search.json").read_text())
    assert again["trials_in_study"] > before and again["best"]["val_accuracy"] >= doc["best"]["val_accuracy"]


def test_killed_worker_trial_is_failed_and_retried_on_resume(tmp_path):
    """SQLite has no heartbeat: a worker killed mid-trial leaves it RUNNING until ``--resume``
    marks it FAIL (its process is gone) and enqueues its parameters again."""
    out = tmp_path / "run"
    args = ["automl", "--data", "digits", "--backbones", "small_cnn", "--max-epochs", "10", "--out", str(out)]
    exe = str(Path(sys.executable).with_name("trusttango"))
    worker = subprocess.Popen([exe, *args, "--budget", "300", "--sampler", "random"], cwd=ROOT, env=ONE_THREAD)
    url, deadline, running = f"sqlite:///{out / 'study.db'}", time.time() + 120, []
    try:
        while not running and time.time() < deadline and worker.poll() is None:
            time.sleep(0.2)
            if not (out / "study.db").exists():  # the worker has not opened its storage yet
                continue
            try:
                with storage_lock(url):  # as the workers do: opening creates tables, never beside a starting worker
                    trials = optuna.load_study(study_name="automl", storage=url).trials
            except Exception:  # no study (or no tables) yet
                continue
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and t.params]
    finally:
        worker.kill()
        worker.wait(timeout=30)
    stale = [t.number for t in optuna.load_study(study_name="automl", storage=url).trials if t.state.name == "RUNNING"]
    assert stale, "the worker was not killed during a trial"
    resumed = _cli(*args, "--resume", "--budget", "6")
    assert resumed.returncode == 0, resumed.stderr
    trials = optuna.load_study(study_name="automl", storage=url).trials
    assert all(t.state != optuna.trial.TrialState.RUNNING for t in trials)
    for number in stale:
        assert trials[number].state == optuna.trial.TrialState.FAIL and "died" in trials[number].user_attrs["error"]
        retried = [t for t in trials if t.user_attrs.get("retry_of") == number]
        # killed mid-suggestion, a trial holds only its first parameters: those are fixed for the retry
        assert retried and trials[number].params.items() <= retried[0].params.items()
    assert json.loads((out / "search.json").read_text())["status"] == "ok"


def test_cli_budget_too_small_writes_empty_record(tmp_path):
    from typer.testing import CliRunner

    from trusttango.cli import app

    done = CliRunner().invoke(app, ["automl", "--data", "digits", "--budget", "0.001", "--out", str(tmp_path)])
    assert isinstance(done.exception, InputError) and "too small" in str(done.exception)  # cli.main: exit status 2
    doc = json.loads((tmp_path / "search.json").read_text())
    assert doc["status"] == "empty" and doc["best"] is None and doc["alc"] == 0.0


def test_diverging_trials_fail_without_ending_the_run(digits):
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 2), lr=(1e4, 2e4), optimizers=("sgd",))
    result = AnytimeSearch(digits, budget_s=3.0, sampler="random", space=space).run()
    failed = [t for t in result.study.trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and "diverged" in failed[0].user_attrs["error"]


@pytest.mark.parametrize("sampler", ["cmaes", "evolution"])
def test_samplers_drive_a_real_search(digits, sampler):
    space = space_for(digits.train, backbones=("small_cnn",), epochs=(1, 1))
    result = AnytimeSearch(digits, budget_s=5.0, sampler=sampler, space=space, prune=False).run()
    states = [t.state for t in result.study.trials]
    assert optuna.trial.TrialState.FAIL not in states and states.count(optuna.trial.TrialState.COMPLETE) >= 2


@pytest.mark.parametrize("half_finished", [False, True], ids=["fresh", "stale-trial"])
def test_workers_started_together_on_sqlite_all_succeed(digits, tmp_path, half_finished):
    """Four workers set up one SQLite study at the same instant (before the storage lock: table
    creation collided, and each of them failed and re-enqueued the killed worker's trial)."""
    from storage_race import check_study, plant_stale_trial, start_together

    url = f"sqlite:///{tmp_path / 'study.db'}"
    stale = plant_stale_trial(digits, url) if half_finished else None
    assert start_together(digits, url, 4) == ["ok"] * 4
    trials = check_study(url, stale)
    assert len(trials) == 4 + (2 if half_finished else 0)  # planted: a finished and a stale trial


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(top_k="3"), r"search.json: top_k: Input should be a valid integer, got \"3\""),
        (lambda d: d.pop("sampler"), r"search.json: sampler: Field required"),
        (lambda d: d["space"].update(widths=["wide"]), r"search.json: space: widths.0: Input should be a valid number"),
        (lambda d: d.update(best={"trial": 0}), r"search.json: best.val_accuracy: Field required"),
    ],
    ids=["type", "missing", "space", "best"],
)
def test_resume_refuses_a_bad_search_json(tmp_path, change, message):
    from dataclasses import asdict

    from trusttango.automl.space import SearchSpace

    record = dict(
        data="digits", budget_s=10.0, sampler="random", storage=f"sqlite:///{tmp_path / 'study.db'}", study="automl",
        objective="accuracy", top_k=3, warm_start=0, fgsm_eps=0.03, prune=True, seed=0, space=asdict(SearchSpace()),
        best={"trial": 0, "val_accuracy": 0.9},
    )  # fmt: skip
    change(record)
    (tmp_path / "search.json").write_text(json.dumps(record))
    before = (tmp_path / "search.json").read_bytes()
    proc = _cli("automl", "--resume", "--out", str(tmp_path), "--budget", "5")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(message, proc.stderr) and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (tmp_path / "search.json").read_bytes() == before and not (tmp_path / "study.db").exists()


def test_resume_refuses_a_study_that_is_not_there(tmp_path):
    from dataclasses import asdict

    from trusttango.automl.space import SearchSpace

    url = f"sqlite:///{tmp_path / 'other.db'}"
    optuna.create_study(storage=url, study_name="someone-else")
    record = dict(
        data="digits", budget_s=10.0, sampler="random", storage=url, study="automl", objective="accuracy", top_k=3,
        warm_start=0, fgsm_eps=0.03, prune=True, seed=0, space=asdict(SearchSpace()), best=None,
    )  # fmt: skip
    (tmp_path / "search.json").write_text(json.dumps(record))
    proc = _cli("automl", "--resume", "--out", str(tmp_path), "--budget", "5")
    assert proc.returncode == 2 and "--resume: no study 'automl' in sqlite:///" in proc.stderr, proc.stderr
    assert optuna.get_all_study_names(url) == ["someone-else"]


def test_a_new_search_keeps_an_earlier_one(tmp_path):
    """OUT is a search's resume state: a new search refuses it (--resume or --force); with
    --force the old folder is set aside, put back when the new search fails, deleted after."""
    from trusttango.outputs import set_aside

    out = tmp_path / "run"
    out.mkdir()
    (out / "search.json").write_text('{"earlier": true}')
    args = ["automl", "--data", "digits", "--budget", "5", "--out", str(out)]
    refused = _cli(*args)
    assert refused.returncode == 2 and "pass --resume to continue it or --force" in refused.stderr, refused.stderr
    both = _cli(*args, "--resume", "--force")
    assert both.returncode == 2 and "choose one" in both.stderr
    assert (out / "search.json").read_text() == '{"earlier": true}'
    with pytest.raises(RuntimeError, match="failed"), set_aside(out):
        out.mkdir()
        (out / "partial.txt").write_text("a new run that fails")  # written at the final place
        raise RuntimeError("failed")
    assert sorted(p.name for p in out.iterdir()) == ["search.json"] and len(list(tmp_path.iterdir())) == 1
    forced = _cli(*args, "--force", "--backbones", "small_cnn", "--max-epochs", "1", "--sampler", "random")
    assert forced.returncode == 0, forced.stderr
    assert json.loads((out / "search.json").read_text())["status"] == "ok" and len(list(tmp_path.iterdir())) == 1


class _Payload:
    """Unpickling it creates ``marker``: what an attacker would write into a shared study."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _cma_study(url: str, sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    study = optuna.create_study(storage=url, study_name="cma", sampler=sampler, load_if_exists=True)
    study.optimize(lambda t: (t.suggest_float("a", -1, 1) - 0.3) ** 2 + t.suggest_float("b", -1, 1) ** 2, n_trials=14)
    return study


def _plant(study: optuna.Study, marker: Path) -> None:
    payload = pickle.dumps(_Payload(marker)).hex()
    trial = optuna.trial.create_trial(
        params={"a": 0.1, "b": 0.1}, value=0.05,
        distributions={k: optuna.distributions.FloatDistribution(-1, 1) for k in "ab"},
        system_attrs={"cma:optimizer:0": payload, "cma:generation": 99},
    )  # fmt: skip
    study.add_trial(trial)


def test_cmaes_state_is_json_data_that_round_trips():
    from cmaes import CMA

    from trusttango.automl.signed import dump_state, load_state

    optimizer = CMA(mean=np.zeros(3), sigma=0.5, seed=0)
    for _ in range(3):
        optimizer.tell([(x, float(x @ x)) for x in (optimizer.ask() for _ in range(optimizer.population_size))])
    restored = load_state(dump_state(optimizer))
    assert json.loads(dump_state(optimizer)) and restored.generation == optimizer.generation == 3
    assert np.array_equal(restored.mean, optimizer.mean) and restored._sigma == optimizer._sigma
    reference = CMA.__new__(CMA)  # the library's own serialised form (pickle's): the upper triangle of C
    reference.__setstate__(optimizer.__getstate__())
    assert np.array_equal(restored._C, reference._C) and np.allclose(restored._C, optimizer._C, atol=1e-12)


def test_cmaes_state_written_by_someone_else_is_never_executed(tmp_path, monkeypatch):
    """A payload written into the study's storage ran when stock CMA-ES resumed it (the control
    below shows it); the signed sampler refuses it in one line before unpickling anything."""
    from trusttango.automl.signed import KEY_ENV, SignedCmaEsSampler

    monkeypatch.setenv(KEY_ENV, "ab" * 32)
    assert isinstance(make_sampler("cmaes", 0), SignedCmaEsSampler)  # what `automl --sampler cmaes` uses
    monkeypatch.setenv(KEY_ENV, "not hex")
    with pytest.raises(InputError, match=f"{KEY_ENV}: expected the study key as hex digits"):
        make_sampler("cmaes", 0)

    key = bytes(range(32))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = _cma_study(url, SignedCmaEsSampler(seed=0, key=key, n_startup_trials=2))
    signed = [t for t in study.trials if any(k.startswith("cma:optimizer") for k in t.system_attrs)]
    assert signed, "the sampler saved no state to authenticate"
    generation = max(t.system_attrs.get("cma:generation", 0) for t in study.trials)
    resumed = _cma_study(url, SignedCmaEsSampler(seed=1, key=key, n_startup_trials=2))  # its own state verifies
    assert len(resumed.trials) == 28
    assert max(t.system_attrs.get("cma:generation", 0) for t in resumed.trials) > generation  # continued, not restarted
    marker = tmp_path / "pwned"
    _plant(study, marker)
    with pytest.raises(InputError, match=r"CMA-ES state saved with trial 28 is not signed with this key"):
        _cma_study(url, SignedCmaEsSampler(seed=2, key=key, n_startup_trials=2))
    assert not marker.exists()
    with pytest.raises(InputError, match="not signed"):  # another key: another installation's state is refused too
        _cma_study(url, SignedCmaEsSampler(seed=2, key=bytes(32), n_startup_trials=2))
    control = tmp_path / "control"
    _plant(optuna.create_study(storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="cma"), control)
    with contextlib.suppress(Exception):  # stock CMA-ES unpickles whatever the storage holds
        _cma_study(f"sqlite:///{tmp_path / 'c.db'}", optuna.samplers.CmaEsSampler(seed=0, n_startup_trials=0))
    assert control.exists()


def test_the_saved_best_is_the_studys_best_whoever_trained_it(digits, tmp_path):
    """A later run that finds nothing better (here: one of 2 s) saves the study's best trial, whose
    weights an earlier run kept, not its own best; the saved model scores the study's best value."""
    from trusttango.automl.results import write_results
    from trusttango.evaluate import evaluate

    url, space = f"sqlite:///{tmp_path / 'study.db'}", space_for(digits.train, backbones=("small_cnn",), epochs=(1, 3))
    kept = tmp_path / "trials"
    first = AnytimeSearch(digits, budget_s=12.0, sampler="random", storage=url, space=space, artifacts=kept).run()
    best = first.study.best_trial
    assert Path(best.user_attrs["weights"]).parent == kept.resolve()
    later = AnytimeSearch(digits, budget_s=2.0, sampler="random", storage=url, space=space, artifacts=kept,
                          quick_start=False, seed=1).run()  # fmt: skip
    assert later.study.best_trial.number == best.number
    doc = write_results(later, digits, tmp_path / "out", {"data": "digits"})
    assert doc["best"]["trial"] == best.number and doc["best"]["weights"] == "kept"
    assert doc["best"]["val_accuracy"] == best.value
    saved = load_model(tmp_path / "out" / "best_model")
    assert evaluate(saved.model, digits.val).accuracy == pytest.approx(best.value, abs=1e-9)


def test_a_worker_on_another_split_or_space_is_refused(digits, tmp_path):
    """Trials of one study are comparable only on one split and one space: a worker whose data
    split (another --split-seed) or search space differs is refused in one line, the study as it was."""
    from trusttango.data import load_builtin

    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = AnytimeSearch(digits, budget_s=5.0, sampler="random", storage=url).study()
    before = dict(study.user_attrs)
    other = AnytimeSearch(load_builtin("digits", seed=1), budget_s=5.0, sampler="random", storage=url)
    with pytest.raises(InputError, match=r"study 'automl': its trials were scored on other data or another split"):
        other.study()
    assert optuna.load_study(study_name="automl", storage=url).user_attrs == before
    assert AnytimeSearch(load_builtin("digits", seed=0), budget_s=5.0, storage=url).study().user_attrs == before
    narrow = space_for(digits.train, backbones=("small_cnn",))
    with pytest.raises(InputError, match=r"study 'automl': searches another space \(backbones differ\)"):
        AnytimeSearch(digits, budget_s=5.0, storage=url, space=narrow).study()
    assert optuna.load_study(study_name="automl", storage=url).user_attrs == before
