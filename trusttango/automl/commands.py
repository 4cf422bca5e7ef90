"""``trusttango automl``: anytime architecture + hyperparameter search under a time budget."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from trusttango.errors import InputError, require

console = Console(stderr=True)


def _settings(resume: bool, out: Path, given: dict) -> dict:
    """The run's settings: the command line's, or on ``--resume`` those of ``OUT/search.json``
    with this run's ``--budget`` (a storage URL given again overrides the recorded one, whose
    password was masked). A run killed before writing ``search.json`` resumes from its
    storage (``--storage`` or ``OUT/study.db``) with the command line's settings."""
    from trusttango.automl.results import SEARCH_JSON

    if not resume:
        return given
    record = out / SEARCH_JSON
    if not record.exists():  # the first run was killed before writing it: resume its storage with these settings
        require(
            bool(given["storage"]) or (out / "study.db").exists(),
            f"--resume: neither {record} nor {out / 'study.db'} found; run once without --resume first",
        )
        return given
    settings = json.loads(record.read_text())
    settings = {k: settings[k] for k in given if k in settings} | {"budget_s": given["budget_s"]}
    if given["storage"]:
        settings["storage"] = given["storage"]
    require("***" not in settings["storage"], "--resume: the recorded storage URL hides its password; give --storage")
    return settings


def automl(
    data: str = typer.Option("digits", help="Built-in name, image folder, .npz or IDX file."),
    budget: float = typer.Option(600.0, help="Wall-clock budget T of the whole run, seconds."),
    sampler: str = typer.Option("tpe", help="random | tpe | cmaes | evolution (NSGA-II)."),
    storage: str = typer.Option("", help="SQLAlchemy URL or journal:PATH (default: sqlite file in OUT)."),
    study: str = typer.Option("automl", help="Study name (workers sharing storage and name share the study)."),
    out: Path = typer.Option(Path("runs/automl"), help="Output folder."),
    objective: str = typer.Option("accuracy", help="accuracy | accuracy+robustness (Pareto search)."),
    backbones: str = typer.Option("small_cnn,resnet18,mobilenet_v2", help="Comma-separated backbones to search."),
    max_epochs: int = typer.Option(10, min=1, help="Largest epoch count a trial may draw."),
    top_k: int = typer.Option(3, min=1, help="Models in the ensemble."),
    warm_start: int = typer.Option(0, min=0, help="Seed with the best configs of the N most similar studies."),
    fgsm_eps: float = typer.Option(0.03, help="FGSM step of the robustness objective."),
    prune: bool = typer.Option(True, help="Prune hopeless trials from their learning curves."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    resume: bool = typer.Option(False, help="Continue the study recorded in OUT/search.json."),
) -> None:
    """Search the unified architecture and training under budget T; write the best model,
    trials.csv, the learning curve with its ALC, and search.json."""
    from trusttango.automl.results import write_results
    from trusttango.automl.runner import AnytimeSearch
    from trusttango.automl.space import SearchSpace, space_for
    from trusttango.automl.storage import default_url, masked
    from trusttango.data import load_data

    given = dict(
        data=data, budget_s=budget, sampler=sampler, storage=storage, study=study, objective=objective,
        top_k=top_k, warm_start=warm_start, fgsm_eps=fgsm_eps, prune=prune, seed=seed, space=None,
    )  # fmt: skip
    settings = _settings(resume, out, given)
    record = out / "search.json"
    previous = json.loads(record.read_text()).get("best") if resume and record.exists() else None
    out.mkdir(parents=True, exist_ok=True)
    settings["storage"] = settings["storage"] or default_url(out)
    splits = load_data(settings["data"], seed=settings["seed"])
    if settings["space"] is None:
        names = tuple(b.strip() for b in backbones.split(",") if b.strip())
        space = space_for(splits.train, backbones=names, epochs=(1, max_epochs))
    else:
        space = SearchSpace.from_dict(settings["space"])
    search = AnytimeSearch(
        splits, settings["budget_s"], settings["sampler"], settings["storage"], settings["study"], space,
        settings["objective"], settings["prune"], settings["top_k"], settings["fgsm_eps"], settings["warm_start"],
        settings["seed"], device,
    )  # fmt: skip
    result = search.run()
    record = {**settings, "storage": masked(settings["storage"]), "space": space.to_dict()}
    doc = write_results(result, splits, out, record, previous)
    if doc["best"] is None:
        raise InputError(f"--budget {settings['budget_s']:g} s is too small to train any model on {settings['data']}; "
                         f"wrote an empty-result record to {out / 'search.json'}")  # fmt: skip
    best, ens = doc["best"], doc["ensemble"]
    ensemble = f"top-{ens['k']} ensemble {ens['ensemble_test_accuracy']:.4f}; " if ens else ""
    console.print(
        f"{result.trials_run} trials in {result.elapsed_s:.1f} s; ALC {doc['alc']:.4f}; best trial {best['trial']} "
        f"test accuracy {best['test_accuracy']:.4f}; {ensemble}written to {out}"
    )


def register(app: typer.Typer) -> None:
    app.command(name="automl")(automl)
