"""CLI: ``trusttango automl``: anytime architecture + hyperparameter search under a time budget."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from trusttango.cli._common import console, data_option, items
from trusttango.errors import InputError, require
from trusttango.outputs import check_output, set_aside

BACKBONES_OPTION = typer.Option(
    "small_cnn,resnet18,mobilenet_v2",
    show_default=False,
    help="Comma-separated backbones to search (default: small_cnn, resnet18, mobilenet_v2).",
)


def automl(
    data: str = data_option("digits"),
    budget: float = typer.Option(600.0, help="Wall-clock budget T of the whole run, seconds."),
    sampler: str = typer.Option("tpe", help="random | tpe | cmaes | evolution (NSGA-II)."),
    storage: str = typer.Option("", help="SQLAlchemy URL or journal:PATH (default: sqlite file in OUT)."),
    study: str = typer.Option("automl", help="Study name (workers sharing storage and name share the study)."),
    out: Path = typer.Option(Path("runs/automl"), help="Output folder."),
    objective: str = typer.Option("accuracy", help="accuracy | accuracy+robustness (Pareto search)."),
    backbones: str = BACKBONES_OPTION,
    max_epochs: int = typer.Option(10, min=1, help="Largest epoch count a trial may draw."),
    top_k: int = typer.Option(3, min=1, help="Models in the ensemble."),
    warm_start: int = typer.Option(0, min=0, help="Seed with the best configs of the N most similar studies."),
    fgsm_eps: float = typer.Option(0.03, help="FGSM step of the robustness objective."),
    prune: bool = typer.Option(True, help="Prune hopeless trials from their learning curves."),
    seed: int = typer.Option(0, help="Seed of the sampler and of each trial's training."),
    split_seed: int = typer.Option(
        0, help="Seed of the train/validation/test split: every worker of one study must use the same."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    resume: bool = typer.Option(False, "--resume", help="Continue the study recorded in OUT/search.json."),
    force: bool = typer.Option(
        False, "--force", help="Start over in an existing OUT (the old one is deleted only once the new run ends)."
    ),
) -> None:
    """Search the unified architecture and training under budget T; write the best model,
    trials.csv, the learning curve with its ALC, and search.json. OUT is the search's resume
    state: a new search refuses an OUT that holds one unless --force (the old one is set aside and
    deleted only once the new search ends)."""
    from trusttango.automl.results import resume_settings

    require(not (resume and force), "--resume continues the search in OUT, --force starts over: choose one")
    earlier = out.is_dir() and any(out.iterdir())
    require(resume or force or not earlier, f"--out {out}: holds an earlier search; pass --resume to continue it "
            "or --force to start over")  # fmt: skip
    check_output(out, True, [data])
    given = dict(
        data=data, budget_s=budget, sampler=sampler, storage=storage, study=study, objective=objective,
        top_k=top_k, warm_start=warm_start, fgsm_eps=fgsm_eps, prune=prune, seed=seed, split_seed=split_seed,
        space=None,
    )  # fmt: skip
    settings = resume_settings(resume, out, given)
    with nullcontext() if resume else set_aside(out):
        result, doc = _search(settings, out, resume, tuple(items(backbones, "--backbones")), max_epochs, device)
    if doc["best"] is None:
        raise InputError(f"--budget {settings['budget_s']:g} s is too small to train any model on {settings['data']}; "
                         f"wrote an empty-result record to {out / 'search.json'}")  # fmt: skip
    best, ens = doc["best"], doc["ensemble"]
    ensemble = f"top-{ens['k']} ensemble {ens['ensemble_test_accuracy']:.4f}; " if ens else ""
    console.print(
        f"{result.trials_run} trials in {result.elapsed_s:.1f} s; ALC {doc['alc']:.4f}; best trial {best['trial']} "
        f"test accuracy {best['test_accuracy']:.4f}; {ensemble}written to {out}"
    )


def _search(settings: dict, out: Path, resume: bool, backbones: tuple[str, ...], max_epochs: int, device: str):
    """Run the search of ``settings`` in ``out`` and write its results there; (result, search.json document)."""
    from trusttango.automl.results import SearchRecord, write_results
    from trusttango.automl.runner import AnytimeSearch
    from trusttango.automl.space import SearchSpace, space_for
    from trusttango.automl.storage import default_url, masked, study_names
    from trusttango.data import load_data
    from trusttango.schema import read

    record = out / "search.json"
    previous = read(SearchRecord, record).model_dump()["best"] if resume and record.exists() else None
    recorded = None if settings["space"] is None else SearchSpace.from_dict(settings["space"], f"{record}: space")
    out.mkdir(parents=True, exist_ok=True)
    settings["storage"] = settings["storage"] or default_url(out)
    if resume:
        names, where = study_names(settings["storage"]), masked(settings["storage"])
        require(settings["study"] in names, f"--resume: no study {settings['study']!r} in {where} (give the "
                "--storage and --study of the search to continue)")  # fmt: skip
    splits = load_data(settings["data"], seed=settings["split_seed"])
    space = recorded or space_for(splits.train, backbones=backbones, epochs=(1, max_epochs))
    search = AnytimeSearch(
        splits, settings["budget_s"], settings["sampler"], settings["storage"], settings["study"], space,
        settings["objective"], settings["prune"], settings["top_k"], settings["fgsm_eps"], settings["warm_start"],
        settings["seed"], device, artifacts=out / "trials",
    )  # fmt: skip
    result = search.run()
    record = {**settings, "storage": masked(settings["storage"]), "space": space.to_dict()}
    return result, write_results(result, splits, out, record, previous)


def register(app: typer.Typer) -> None:
    """Add ``automl`` to the CLI."""
    app.command(name="automl")(automl)
