"""Privacy CLI commands: ``anonymize`` (k-anonymity + linkage attack), ``membership``
(membership-inference audit of a saved model) and ``randomized-response``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
import yaml

from trusttango.cli._common import (
    FORCE_OPTION,
    check_compatible,
    console,
    data_option,
    items,
    model_argument,
    model_dir,
    recorded_data,
)
from trusttango.errors import InputError, require
from trusttango.outputs import atomic_output, check_output


def _read_mapping(path: Path, option: str) -> dict:
    """A YAML (``.yaml`` / ``.yml``) or JSON file holding a mapping."""
    require(path.exists(), f"{option} {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise InputError(f"{option} {path}: not valid YAML/JSON ({err})") from None
    require(isinstance(data, dict), f"{option} {path}: expected a mapping")
    return data


def _spec(path: Path | None) -> dict:
    """A small YAML/JSON declaration: ``identifiers``, ``quasi_identifiers`` (list, or name -> kind),
    ``sensitive``, ``insensitive`` and ``hierarchies`` (column -> {value: parent})."""
    if path is None:
        return {}
    spec = _read_mapping(path, "--spec")
    unknown = set(spec) - {"identifiers", "quasi_identifiers", "sensitive", "insensitive", "hierarchies"}
    require(not unknown, f"--spec {path}: unknown key(s) {', '.join(sorted(unknown))}")
    return spec


def _hierarchies(declared: dict, path: str) -> dict:
    """Hierarchies from the spec, then from ``--hierarchies`` (a YAML/JSON file, or ``adult`` for the built-in ones)."""
    from trusttango.privacy.release import adult_hierarchies, parse_hierarchies

    trees = parse_hierarchies(declared.get("hierarchies") or {}, "--spec hierarchies")
    if path == "adult":
        return adult_hierarchies() | trees
    if path:
        return parse_hierarchies(_read_mapping(Path(path), "--hierarchies"), f"--hierarchies {path}") | trees
    return trees


def anonymize_cmd(
    table: str = typer.Option(..., "--data", help="CSV file, or the built-in table 'lecture' or 'adult'."),
    k: int = typer.Option(5, "--k", help="Each record shares its quasi-identifiers with >= k-1 others."),
    qi: str = typer.Option("", help="Quasi-identifier columns, comma-separated (kinds inferred from the values)."),
    sensitive: str = typer.Option("", help="Sensitive columns, comma-separated (kept as they are)."),
    identifiers: str = typer.Option("", help="Direct identifiers to drop, comma-separated."),
    insensitive: str = typer.Option("", help="Columns published as they are, comma-separated."),
    spec: Path = typer.Option(
        None,
        help="YAML/JSON with identifiers, quasi_identifiers (name: numeric|categorical), sensitive, insensitive, "
        "hierarchies.",
    ),
    hierarchies: str = typer.Option(
        "", help="YAML/JSON {column: {value: parent}} generalisation hierarchies ('adult': built-in; default flat)."
    ),
    l_div: int = typer.Option(0, "--l", help="Also make each class distinct l-diverse on the first sensitive column."),
    t_close: float = typer.Option(0.0, "--t", help="Also make each class t-close on the first sensitive column."),
    out: Path = typer.Option(Path("released.csv"), help="Released CSV to write (the input is never modified)."),
    force: bool = FORCE_OPTION,
) -> None:
    """k-anonymise a table with Mondrian (categorical QIs up their hierarchies), report information
    loss (NCP), and run a linkage attack. Every column must be declared: identifier (dropped),
    quasi-identifier (generalised), sensitive or insensitive (published as they are)."""
    from trusttango.privacy.release import anonymize, describe, linkage_summary, read_table, release_linkage

    declared = _spec(spec)
    quasi = declared.get("quasi_identifiers") or items(qi)
    require(len(quasi) > 0, "--qi: give the quasi-identifier columns (or a --spec file)")
    roles = {role: declared.get(role) or items(given) for role, given in
             [("sensitive", sensitive), ("identifiers", identifiers), ("insensitive", insensitive)]}  # fmt: skip
    check_output(out, force, [table, spec], kind="file")
    frame = read_table(table)
    result = anonymize(
        frame, k, quasi, roles["sensitive"], roles["identifiers"], l_div or None, _hierarchies(declared, hierarchies),
        t_close or None, roles["insensitive"],
    )  # fmt: skip
    before, after = release_linkage(frame, result)
    with atomic_output(out, kind="file") as staging:
        result.table.to_csv(staging, index=False)
    console.print(describe(result))
    for name in result.likely_identifiers:
        console.print(f"warning: column {name!r} is unique per row, a likely identifier; declare it --identifiers")
    console.print(linkage_summary(before, after, result))
    console.print(f"written {out}")


def membership_cmd(
    model: Path = model_argument(),
    data: str = data_option(help="The data the model was trained on (members: its train split)."),
    attack: str = typer.Option("rmia", help="rmia (Zarifzadeh et al. 2024) | lira (Carlini et al. 2022) | loss"),
    reference_models: int = typer.Option(2, help="Reference models trained like the model (rmia >= 1, lira >= 2)."),
    online: bool = typer.Option(False, "--online/--offline", help="Reference models train on the candidates too."),
    n: int = typer.Option(
        1000, min=10, help="Members to test (at most half the test split: the rest is the population)."
    ),  # fmt: skip
    members: Path = typer.Option(None, help="Text file of train-split indices to test as members (one a line)."),
    seed: int = typer.Option(0, help="Seed of the split (user data), the sample and the reference models."),
    out: Path = typer.Option(Path("runs/membership"), help="Folder for roc.png and membership.json."),
    force: bool = FORCE_OPTION,
) -> None:
    """Membership-inference audit: TPR at 0.1 % and 1 % FPR, AUC and the epsilon the attack proves,
    beside the loss threshold on the same examples, with a log-log ROC PNG."""
    from trusttango.data import load_data
    from trusttango.models import load_model
    from trusttango.models.external import ModelSpec
    from trusttango.privacy.audits import plot_roc
    from trusttango.privacy.audits.membership_audit import candidates, check_attack, run_membership
    from trusttango.privacy.audits.recipe import saved_recipe

    check_attack(attack, reference_models, online)
    check_output(out, force, [model, data, members])
    indices = _member_indices(members) if members else None
    saved = load_model(model_dir(model))
    declared = not isinstance(saved.config, ModelSpec) or saved.meta.get("members") == "train"
    require(data is not None or declared,
            f"{model}: an imported model records no training run, so its members are not assumed; give --data, "
            "the data whose train split it was trained on (or import it with --members train)")  # fmt: skip
    splits = load_data(recorded_data(saved, data, model), seed=seed)
    check_compatible(saved, splits.test)
    found = candidates(splits.train, splits.test, n, indices, seed)
    recipe = None if attack == "loss" else saved_recipe(saved, progress=True)
    privacy = saved.meta.get("privacy") or {}
    audit = run_membership(saved.model, found, attack, recipe, reference_models, online,
                           privacy.get("delta", 1e-5), seed)  # fmt: skip
    with atomic_output(out) as staging:
        plot_roc([audit.baseline, audit.result] if attack != "loss" else [audit.result], staging / "roc.png", log=True)
        (staging / "membership.json").write_text(json.dumps(audit.summary(), indent=2))
    console.print(audit.result.interpretation())
    if attack != "loss":
        console.print(f"same examples, {audit.baseline.interpretation()}")
    if privacy:
        console.print(audit.bound.against(privacy["epsilon"]))
    console.print(f"written {out / 'roc.png'} and {out / 'membership.json'}")


def _member_indices(path: Path) -> list[int]:
    """Train-split indices, one a line (blank lines skipped)."""
    require(path.is_file(), f"--members {path}: no such file")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    bad = [line for line in lines if not line.isdigit()]
    require(not bad, f"--members {path}: {bad[:1]} is not a non-negative integer index")
    require(bool(lines), f"--members {path}: no index listed")
    return [int(line) for line in lines]


def randomized_response_cmd(
    table: Path = typer.Option(..., "--data", help="CSV file with a binary column."),
    column: str = typer.Option(..., help="The binary column (0/1, yes/no, true/false) to randomise."),
    epsilon: float = typer.Option(1.0, help="Local differential privacy of each answer."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("randomized.csv"), help="CSV to write with the column randomised."),
    force: bool = FORCE_OPTION,
) -> None:
    """Randomised response on one binary column, and the unbiased estimate of its true rate with a 95 % CI."""
    from trusttango.privacy.dp import randomized_response as rr
    from trusttango.privacy.release import read_table

    check_output(out, force, [table], kind="file")
    frame = read_table(str(table))
    require(column in frame.columns, f"--column {column!r} not in {table} (columns: {', '.join(frame.columns)})")
    released = frame.copy()
    released[column] = rr.randomize(frame[column].to_numpy(), epsilon, seed).astype(int)
    with atomic_output(out, kind="file") as staging:
        released.to_csv(staging, index=False)
    console.print(str(rr.estimate(released[column].to_numpy(), epsilon)))
    console.print(f"written {out}")


def register(app: typer.Typer) -> None:
    app.command(name="anonymize")(anonymize_cmd)
    app.command(name="membership")(membership_cmd)
    app.command(name="randomized-response")(randomized_response_cmd)
