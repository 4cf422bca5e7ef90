"""CLI: ``trusttango audit [MODEL]``: the whole trust audit into one report folder, a CI gate
on its verdicts (``--fail-on``), and ``trusttango audit diff OLD NEW``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.core import TyperGroup

from trusttango.cli._common import MODEL_ARG_HELP, console
from trusttango.cli.own_model import MEMBERS, takes_own_model
from trusttango.errors import require


@takes_own_model
def audit(
    model: Path = typer.Argument(None, help=MODEL_ARG_HELP + " Default: search for one under --budget."),
    data: str = typer.Option(None, "--data", help="Built-in dataset or path (default fashion-mnist)."),
    budget: float = typer.Option(None, help="Seconds for the whole audit (default 600)."),
    out: Path = typer.Option(None, help="Report folder (default report/)."),
    config: Path = typer.Option(None, help="YAML file with any AuditConfig option; flags override it."),
    sampler: str = typer.Option(None, help="Search sampler: random | tpe | cmaes | evolution."),
    seed: int = typer.Option(None),
    robust_eps: float = typer.Option(
        None, help="Budget of the robustness verdict (default: the data's published one, named in the report)."
    ),
    robust_norm: str = typer.Option(None, help="Norm of the robustness verdict: linf (default) | l2."),
    robust_preset: str = typer.Option(
        None, help="AutoAttack preset of the verdict: standard (default, Croce & Hein 2020) | fast (weaker, cheaper)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into an existing, non-empty report folder."),
    fail_on: str = typer.Option(
        None, "--fail-on", help="fail | warn: after writing the report, exit 1 if any verdict is at or below it."
    ),
    members: str = MEMBERS,
    source: object = None,
) -> None:
    """Search (or load) a model, then explain, attack, detect, probe privacy and fairness; write the report.

    Bring your own model with --arch + --weights, --model-code (+ --weights) or --onnx. Compare two
    reports with: trusttango audit diff OLD NEW.
    """
    from trusttango.report.audit import run_audit

    require(fail_on in (None, "fail", "warn"), f"--fail-on: expected fail or warn, got {fail_on!r}")
    flags = {"data": data, "budget": budget, "out": out, "model": model, "sampler": sampler, "seed": seed}
    flags.update(robust_eps=robust_eps, robust_norm=robust_norm, robust_preset=robust_preset)
    flags.update(force=force or None, model_source=source, members=members)
    page = run_audit(_audit_config(flags, config))
    console.print(f"report written to {page}")
    if fail_on is not None:
        _gate(json.loads((page.parent / "audit.json").read_text()), fail_on)


def _audit_config(flags: dict, config: Path | None) -> object:
    """The AuditConfig of the flags given (over the YAML ``config``, if any); a MODEL without
    --data is audited on the data it was trained on."""
    from trusttango.cli._common import model_dir, recorded_data
    from trusttango.models import load_model
    from trusttango.report.audit import AuditConfig

    if flags["model"] is not None:
        flags["model"] = model_dir(flags["model"])
        if flags["data"] is None and config is None:
            flags["data"] = recorded_data(load_model(flags["model"]), None, flags["model"])
    if config is not None:
        return AuditConfig.from_yaml(config, **flags)
    return AuditConfig(**{k: v for k, v in flags.items() if v is not None})


def _gate(record: dict, level: str) -> None:
    """Exit 1 when a verdict of ``record`` is at or below ``level``, naming each one on a line."""
    from trusttango.report.verdicts import at_or_below

    failing = [s for s in record["sections"] if at_or_below(s["verdict"], level)]
    for section in failing:
        console.print(f"{section['key']}: {section['verdict']} ({section['threshold']})", highlight=False)
    if failing:
        raise typer.Exit(1)


def diff(
    old: Path = typer.Argument(..., help="The earlier audit.json (or its report folder)."),
    new: Path = typer.Argument(..., help="The later audit.json (or its report folder)."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit 1 when a verdict got worse."),
    json_out: Path = typer.Option(None, "--json", help="Also write the comparison to this JSON file."),
) -> None:
    """Compare two audits: each stage's verdict and each headline figure, and what got worse."""
    from rich.table import Table

    from trusttango.report.diff import diff_audits, read_audit

    result = diff_audits(read_audit(old), read_audit(new))
    table = Table(title=f"{old} -> {new}")
    for column in ("stage / figure", "old", "new", "change"):
        table.add_column(column)
    fell = {line.split(":")[0] for line in result.regressions}
    for stage, was, now in result.verdicts:
        table.add_row(stage, was, now, "worse" if stage in fell else "same" if was == now else "changed")
    for name, was, now, change in result.figures:
        table.add_row(name, "-" if was is None else f"{was:.4g}", "-" if now is None else f"{now:.4g}", change)
    console.print(table)
    for line in result.regressions + result.worse:
        console.print(f"worse: {line}", highlight=False)
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_dict(), indent=2))
    if fail_on_regression and result.regressions:
        raise typer.Exit(1)


class _AuditGroup(TyperGroup):
    """``audit`` runs the audit unless its first word names a subcommand (``diff``)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    """Add ``audit`` (and ``audit diff``) to the CLI."""
    group = typer.Typer(cls=_AuditGroup, help="The trust audit; `audit diff OLD NEW` compares two.")
    group.command("run")(audit)
    group.command("diff")(diff)
    app.add_typer(group, name="audit")
