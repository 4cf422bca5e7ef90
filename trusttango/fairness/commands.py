"""CLI: ``trusttango fairness MODEL DATA --groups groups.csv`` and ``trusttango cleverhans MODEL DATA --region ...``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.errors import InputError, require


def _load(model: Path, data: str, split: str, seed: int):
    from trusttango.cli import _check_compatible
    from trusttango.data import load_data
    from trusttango.models import load_model

    require(split in ("train", "val", "test"), f"--split: expected train, val or test, got {split!r}")
    saved = load_model(model)
    ds = getattr(load_data(data, seed=seed), split)
    _check_compatible(saved, ds)
    return saved, ds


def read_groups(path: Path, n_rows: int):
    """Group table from a CSV file (header row = column names, one row per example of the split)."""
    import pandas as pd

    if not path.exists():
        raise InputError(f"--groups: {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"--groups: {path} is not a readable CSV file ({type(err).__name__})") from None
    require(
        len(frame) == n_rows,
        f"--groups: {path} has {len(frame)} rows but the data split has {n_rows} "
        f"({abs(len(frame) - n_rows)} rows mismatch)",
    )
    return frame


def register(app: typer.Typer) -> None:
    """Add the fairness commands to the CLI."""

    @app.command()
    def fairness(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(..., help="Dataset (built-in name or file) whose split is audited."),
        groups: Path = typer.Option(
            None, help="CSV of group attributes, one row per example (default: the data's own)."
        ),
        columns: str = typer.Option("", help="Comma-separated group columns to use (intersection); default all."),
        split: str = typer.Option("test", help="train | val | test"),
        positive: int = typer.Option(1, help="Class index of the favourable outcome."),
        n_boot: int = typer.Option(200, min=0, help="Bootstrap resamples for the confidence intervals."),
        min_group: int = typer.Option(30, min=1, help="Groups smaller than this are flagged as too small."),
        out: Path = typer.Option(Path("runs/fairness"), help="Folder for fairness.json and balance.png."),
        seed: int = typer.Option(0),
    ) -> None:
        """Per-group accuracy, FPR/FNR, selection rate, calibration and fairness gaps with bootstrap CIs."""
        from trusttango.fairness.audit import balance_table, plot_balance
        from trusttango.fairness.subgroups import model_subgroups

        saved, ds = _load(model, data, split, seed)
        table = read_groups(groups, len(ds)) if groups else None
        cols = [c.strip() for c in columns.split(",") if c.strip()] or None
        if table is None and not ds.extra:
            raise InputError(f"{data}: the data has no group attributes; pass --groups groups.csv")
        report = model_subgroups(
            saved.model, ds, table, cols, positive=positive, n_boot=n_boot, min_group=min_group, seed=seed
        )
        out.mkdir(parents=True, exist_ok=True)
        (out / "fairness.json").write_text(json.dumps(report.to_dict(), indent=2))
        if table is not None:
            ds = ds.subset(range(len(ds)))
            ds.extra = {c: table[c].to_numpy() for c in (cols or table.columns)}
        plot_balance(balance_table(ds, cols), out / "balance.png")
        frame = report.frame().reset_index()
        view = Table(*frame.columns, title=f"subgroups ({ds.name}, positive class {positive})")
        for row in frame.itertuples(index=False):
            view.add_row(*(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row))
        gaps = Table("gap", "difference", f"{report.confidence:.0%} CI", "ratio", "CI")
        for key, g in report.gaps.items():
            gaps.add_row(key, f"{g.difference:.3f}", f"[{g.difference_ci[0]:.3f}, {g.difference_ci[1]:.3f}]",
                         f"{g.ratio:.3f}", f"[{g.ratio_ci[0]:.3f}, {g.ratio_ci[1]:.3f}]")  # fmt: skip
        Console().print(view, gaps)
        Console(stderr=True).print(f"written {out / 'fairness.json'} and {out / 'balance.png'}")

    @app.command()
    def cleverhans(
        model: Path = typer.Argument(..., help="Model directory."),
        data: str = typer.Argument(..., help="Image dataset (built-in name or file)."),
        region: str = typer.Option(..., help="Suspected artefact box x0,y0,x1,y1 in pixels (end exclusive)."),
        split: str = typer.Option("test", help="train | val | test"),
        max_examples: int = typer.Option(1000, min=1),
        out: Path = typer.Option(Path("runs/cleverhans"), help="Folder for cleverhans.json."),
        seed: int = typer.Option(0),
    ) -> None:
        """Attribution share on the region and prediction change when it is in-painted away."""
        from trusttango.fairness.cleverhans import clever_hans_check, parse_region, region_mask

        box = parse_region(region)
        saved, ds = _load(model, data, split, seed)
        region_mask(ds.input_shape, box)
        report = clever_hans_check(saved.model, ds, region=box, max_examples=max_examples)
        out.mkdir(parents=True, exist_ok=True)
        (out / "cleverhans.json").write_text(json.dumps(report.to_dict(), indent=2))
        view = Table(
            "metric", "value", title="Clever Hans check " + ("[red]FLAGGED[/red]" if report.flagged else "passed")
        )
        for key, value in report.to_dict().items():
            view.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
        Console().print(view)
