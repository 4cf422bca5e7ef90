"""CLI: ``trusttango audit [MODEL]``: the whole trust audit into one report folder."""

from __future__ import annotations

from pathlib import Path

import typer

from trusttango.cli._common import MODEL_ARG_HELP, console


def audit(
    model: Path = typer.Argument(None, help=MODEL_ARG_HELP + " Default: search for one under --budget."),
    data: str = typer.Option(None, "--data", help="Built-in dataset or path (default fashion-mnist)."),
    budget: float = typer.Option(None, help="Seconds for the whole audit (default 600)."),
    out: Path = typer.Option(None, help="Report folder (default report/)."),
    config: Path = typer.Option(None, help="YAML file with any AuditConfig option; flags override it."),
    sampler: str = typer.Option(None, help="Search sampler: random | tpe | cmaes | evolution."),
    seed: int = typer.Option(None),
    robust_eps: float = typer.Option(
        None, help="L-inf budget of the robustness verdict (default: the data's published one, named in the report)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into an existing, non-empty report folder."),
) -> None:
    """Search (or load) a model, then explain, attack, detect, probe privacy and fairness; write the report."""
    from trusttango.cli._common import model_dir
    from trusttango.report.audit import AuditConfig, run_audit

    if model is not None:
        model = model_dir(model)
        if data is None and config is None:  # the data the model was trained on
            from trusttango.cli._common import recorded_data
            from trusttango.models import load_model

            data = recorded_data(load_model(model), None, model)
    flags = {"data": data, "budget": budget, "out": out, "model": model, "sampler": sampler, "seed": seed}
    flags["robust_eps"] = robust_eps
    flags["force"] = force or None
    if config is not None:
        cfg = AuditConfig.from_yaml(config, **flags)
    else:
        cfg = AuditConfig(**{k: v for k, v in flags.items() if v is not None})
    page = run_audit(cfg)
    console.print(f"report written to {page}")


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the CLI."""
    app.command()(audit)
