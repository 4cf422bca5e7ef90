"""CLI: ``trusttango fairness MODEL --data DATA --groups groups.csv`` and
``trusttango cleverhans MODEL --data DATA --region x0,y0,x1,y1``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.cli._common import FORCE_OPTION, console, data_option, items, load_model_and_data, model_argument
from trusttango.errors import InputError
from trusttango.outputs import atomic_output, check_output


def _print_report(report, name: str, positive: int) -> None:
    frame = report.frame().reset_index()
    view = Table(*frame.columns, title=f"subgroups ({name}, positive class {positive})")
    for row in frame.itertuples(index=False):
        view.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
    gaps = Table("gap", "difference", f"{report.confidence:.0%} CI", "ratio", "CI")
    for key, g in report.gaps.items():
        gaps.add_row(key, f"{g.difference:.3f}", f"[{g.difference_ci[0]:.3f}, {g.difference_ci[1]:.3f}]",
                     f"{g.ratio:.3f}", f"[{g.ratio_ci[0]:.3f}, {g.ratio_ci[1]:.3f}]")  # fmt: skip
    Console().print(view, gaps)


def fairness(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name or file) whose split is audited."),
    groups: Path = typer.Option(None, help="CSV of group attributes, one row per example (default: the data's own)."),
    columns: str = typer.Option("", help="Comma-separated group columns to use (intersection); default all."),
    split: str = typer.Option("test", help="train | val | test"),
    positive: int = typer.Option(1, help="Class index of the favourable outcome."),
    n_boot: int = typer.Option(200, min=0, help="Bootstrap resamples for the confidence intervals."),
    min_group: int = typer.Option(30, min=1, help="Groups smaller than this are flagged as too small."),
    out: Path = typer.Option(Path("runs/fairness"), help="Folder for fairness.json and balance.png."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0),
) -> None:
    """Per-group accuracy, FPR/FNR, selection rate, calibration and fairness gaps with bootstrap CIs."""
    from trusttango.fairness.audit import attach_groups, balance_table, plot_balance, read_groups
    from trusttango.fairness.subgroups import model_subgroups

    check_output(out, force, [model, data, groups])
    loaded = load_model_and_data(model, data, split, seed)
    ds = loaded.data
    table = read_groups(groups, len(ds)) if groups else None
    cols = items(columns) or None
    if table is None and not ds.extra:
        raise InputError(f"{data}: the data has no group attributes; pass --groups groups.csv")
    report = model_subgroups(
        loaded.model, ds, table, cols, positive=positive, n_boot=n_boot, min_group=min_group, seed=seed
    )
    if table is not None:
        ds = attach_groups(ds, table, cols)
    with atomic_output(out) as staging:
        (staging / "fairness.json").write_text(json.dumps(report.to_dict(), indent=2))
        plot_balance(balance_table(ds, cols), staging / "balance.png")
    _print_report(report, ds.name, positive)
    console.print(f"written {out / 'fairness.json'} and {out / 'balance.png'}")


def cleverhans(
    model: Path = model_argument(),
    data: str = data_option(help="Image dataset (built-in name or file)."),
    region: str = typer.Option(..., help="Suspected artefact box x0,y0,x1,y1 in pixels (end exclusive)."),
    split: str = typer.Option("test", help="train | val | test"),
    max_examples: int = typer.Option(1000, min=1),
    out: Path = typer.Option(Path("runs/cleverhans"), help="Folder for cleverhans.json."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0),
) -> None:
    """Attribution share on the region and prediction change when it is in-painted away."""
    from trusttango.fairness.cleverhans import clever_hans_check, parse_region, region_mask

    check_output(out, force, [model, data])
    loaded = load_model_and_data(model, data, split, seed)
    box = parse_region(region)
    region_mask(loaded.data.input_shape, box)
    report = clever_hans_check(loaded.model, loaded.data, region=box, max_examples=max_examples)
    with atomic_output(out) as staging:
        (staging / "cleverhans.json").write_text(json.dumps(report.to_dict(), indent=2))
    view = Table("metric", "value", title="Clever Hans check " + ("[red]FLAGGED[/red]" if report.flagged else "passed"))
    for key, value in report.to_dict().items():
        view.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(view)


def register(app: typer.Typer) -> None:
    """Add the fairness commands to the CLI."""
    app.command()(fairness)
    app.command()(cleverhans)
