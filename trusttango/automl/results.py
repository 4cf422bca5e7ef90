"""What a search writes to its output folder: the best model (a normal model directory),
the trial table (CSV), the learning curve (PNG + JSON with the ALC), the Pareto front of a
multi-objective run (CSV + PNG), and ``search.json`` with everything needed to reproduce
the winner (or a valid empty-result record when no model was trained in time)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict

from trusttango.automl.ensemble import compare
from trusttango.automl.runner import SearchResult, Snapshot
from trusttango.data.base import Splits
from trusttango.errors import require
from trusttango.evaluate import evaluate
from trusttango.models import SavedModel, load_model, save_model
from trusttango.outputs import atomic_output
from trusttango.plotting import save_figure, subplots
from trusttango.schema import read

SEARCH_JSON = "search.json"


class BestTrial(BaseModel):
    """``search.json``'s ``best``: the trial whose model is in ``best_model`` (more fields: results)."""

    model_config = ConfigDict(strict=True, extra="allow")

    trial: int
    val_accuracy: float


class SearchRecord(BaseModel):
    """The schema of ``search.json`` as ``--resume`` reads it back: the run's settings and its
    best trial (the other fields are results)."""

    model_config = ConfigDict(strict=True, extra="allow")

    data: str
    budget_s: float
    sampler: str
    storage: str
    study: str
    objective: str
    top_k: int
    warm_start: int
    fgsm_eps: float
    prune: bool
    seed: int
    split_seed: int = 0
    space: dict
    best: BestTrial | None = None


def saved_model(best: Snapshot, splits: Splits, settings: dict) -> SavedModel:
    """The winner as a :class:`SavedModel` with its test accuracy and search provenance."""
    model = best.model()
    meta = {
        "seed": best.train["seed"],
        "data": settings.get("data", splits.train.name.split("/")[0]),
        "train": best.train,
        "automl": {"trial": best.trial, "params": best.params, "val_accuracy": best.val_accuracy},
        "metrics": {"test_accuracy": evaluate(model, splits.test).accuracy},
    }
    return SavedModel(model, best.config, splits.class_names, meta)


def study_best(result: SearchResult, previous_best: dict | None) -> tuple[Snapshot | None, str]:
    """The model ``best_model`` should now hold (None: keep the one it holds) and where its
    weights come from: ``kept`` (the artifact folder, whichever worker or run trained it),
    ``this run``, or ``missing: ...``. Single-objective studies: the study's best trial;
    otherwise (or before any trial finished): this run's best snapshot if it beats the previous."""
    done = [] if result.multi_objective else result.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not done:
        better = result.best is not None and (
            previous_best is None or result.best.val_accuracy > previous_best["val_accuracy"]
        )
        return (result.best if better else None), "this run"
    trial = result.study.best_trial
    if previous_best is not None and previous_best["trial"] == trial.number:
        return None, str(previous_best.get("weights", "this run"))
    folder = trial.user_attrs.get("weights")
    if folder and (Path(folder) / "config.json").is_file():
        saved = load_model(folder)
        state = {k: v.detach().clone() for k, v in saved.model.state_dict().items()}
        return Snapshot(
            trial.number, float(trial.value), saved.config, saved.meta["train"], trial.params, state
        ), "kept"
    mine = next((snap for snap in result.top if snap.trial == trial.number), None)
    if mine is not None:
        return mine, "this run"
    return None, f"missing: trial {trial.number}'s weights were not kept where this worker can read them"


def pareto_front(result: SearchResult) -> list[dict]:
    """Non-dominated trials of a multi-objective run: accuracy vs accuracy under FGSM."""
    rows = [
        {"trial": t.number, "val_accuracy": t.values[0], "fgsm_accuracy": t.values[1], "params": t.params}
        for t in result.study.best_trials
    ]
    return sorted(rows, key=lambda r: -r["val_accuracy"])


def plot_pareto(result: SearchResult, front: list[dict], path: Path) -> Path:
    """PNG: every finished trial, the Pareto front highlighted."""
    done = result.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    fig, ax = subplots(figsize=(5, 4))
    ax.scatter([t.values[0] for t in done], [t.values[1] for t in done], c="grey", label="trials")
    ax.plot([r["val_accuracy"] for r in front], [r["fgsm_accuracy"] for r in front], "o-", c="C3", label="Pareto front")
    ax.set(xlabel="validation accuracy", ylabel="accuracy under FGSM", title="accuracy vs robustness")
    ax.legend()
    return save_figure(fig, path, dpi=100)


def _write_front(front: list[dict], out: Path) -> None:
    with (out / "pareto.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "val_accuracy", "fgsm_accuracy", "params"])
        for r in front:
            accs = f"{r['val_accuracy']:.4f}", f"{r['fgsm_accuracy']:.4f}"
            writer.writerow([r["trial"], *accs, json.dumps(r["params"])])


def write_results(
    result: SearchResult, splits: Splits, out: str | Path, settings: dict, previous_best: dict | None = None
) -> dict:
    """Write every output under ``out``; return the ``search.json`` document. A resumed run
    keeps ``previous_best`` (and its model directory) unless the study's best trial changed
    (:func:`study_best`); when that trial's weights are missing, ``study_best`` says so."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.study.trials_dataframe().to_csv(out / "trials.csv", index=False)
    result.curve.plot(out / "learning_curve.png", title=settings.get("data", ""))
    curve = {**result.curve.to_dict(), "emissions": result.emissions}
    (out / "learning_curve.json").write_text(json.dumps(curve, indent=2))
    best, weights = study_best(result, previous_best)
    doc: dict = {
        **settings,
        "status": "ok" if best or previous_best else "empty",
        "elapsed_s": result.elapsed_s,
        "trials_run": result.trials_run,
        "trials_in_study": len(result.study.trials),
        "alc": result.curve.alc,
        "best": previous_best,
        "ensemble": compare(result.top, splits.test) if result.top else None,
    }
    if doc["status"] == "empty":
        doc["message"] = f"budget {settings.get('budget_s')} s too small to train any model within it"
    if best is not None:
        saved = saved_model(best, splits, settings)
        with atomic_output(out / "best_model") as staging:
            save_model(saved, staging)
        doc["best"] = {
            **saved.meta["automl"],
            "test_accuracy": saved.meta["metrics"]["test_accuracy"],
            "model": saved.config.to_dict(),
            "train": best.train,
            "weights": weights,
        }
    elif weights.startswith("missing"):
        doc["study_best"] = {"trial": result.study.best_trial.number, "val_accuracy": result.study.best_value,
                             "weights": weights}  # fmt: skip
    if result.multi_objective:
        front = pareto_front(result)
        doc["pareto"] = front
        _write_front(front, out)
        plot_pareto(result, front, out / "pareto.png")
    with atomic_output(out / SEARCH_JSON, kind="file") as staging:  # a killed run leaves the old record whole
        staging.write_text(json.dumps(doc, indent=2, default=str))
    return doc


def resume_settings(resume: bool, out: Path, given: dict) -> dict:
    """The run's settings: the command line's, or on ``--resume`` those of ``OUT/search.json``
    with this run's ``--budget`` (a storage URL given again overrides the recorded one, whose
    password was masked). A run killed before writing ``search.json`` resumes from its
    storage (``--storage`` or ``OUT/study.db``) with the command line's settings."""
    if not resume:
        return given
    record = out / SEARCH_JSON
    if not record.exists():  # the first run was killed before writing it: resume its storage with these settings
        require(
            bool(given["storage"]) or (out / "study.db").exists(),
            f"--resume: neither {record} nor {out / 'study.db'} found; run once without --resume first",
        )
        return given
    recorded = read(SearchRecord, record).model_dump()
    settings = {k: recorded[k] for k in given if k in recorded} | {"budget_s": given["budget_s"]}
    if given["storage"]:
        settings["storage"] = given["storage"]
    require("***" not in settings["storage"], "--resume: the recorded storage URL hides its password; give --storage")
    return settings
