"""CLI: ``trusttango attack`` (robust accuracy and an examples PNG) and ``trusttango robustness``
(robust accuracy under the AutoAttack ensemble, its per-attack table, accuracy-vs-eps curves for
L-inf and L2, and ARA)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from trusttango.cli._common import (
    ATTACK_HELP,
    FORCE_OPTION,
    console,
    data_option,
    first,
    floats,
    load_model_and_data,
    model_argument,
)
from trusttango.errors import require
from trusttango.outputs import atomic_output, check_output


def attack(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name, folder, .npz, IDX); its test split is attacked."),
    attack: str = typer.Option("pgd", help=ATTACK_HELP),
    eps: float = typer.Option(0.03, help="Perturbation budget (norm-bounded attacks), in input units."),
    norm: str = typer.Option("linf", help="linf | l2"),
    steps: int = typer.Option(None, help="Iterations (default: each attack's own, e.g. PGD 50, APGD and FAB 100)."),
    restarts: int = typer.Option(None, help="Random restarts (default: each attack's own)."),
    preset: str = typer.Option(None, help="autoattack only: standard (default) | fast."),
    n: int = typer.Option(500, help="Test examples to attack."),
    out: Path = typer.Option(Path("runs/attack"), help="Folder for attack.json and examples.png."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0),
) -> None:
    """Attack a model on test data: clean vs robust accuracy, success rate, norms, an examples PNG."""
    import torch

    from trusttango.robust import ATTACKS, attack_report, make_attack, plot_examples

    require(attack in ATTACKS, f"--attack: expected one of {', '.join(ATTACKS)}, got {attack!r}")
    check_output(out, force, [model, data])
    loaded = load_model_and_data(model, data, seed=seed)
    x, y = first(loaded.data, n)
    torch.manual_seed(seed)
    given = {"eps": eps, "norm": norm, "steps": steps, "restarts": restarts, "preset": preset}
    settings = {key: value for key, value in given.items() if value is not None}
    attacker = make_attack(attack, loaded.model, **settings)
    report = attack_report(attacker, x, y)
    summary = {"attack": attack, **settings, **report.to_dict()}
    ensemble = getattr(attacker, "report_", None)  # AutoAttack: its per-attack table
    if ensemble is not None:
        summary["ensemble"] = ensemble.to_dict()
        _print_ensemble(ensemble)
    order, result = report.successful_first(), report.result
    with atomic_output(out) as staging:
        (staging / "attack.json").write_text(json.dumps(summary, indent=2))
        plot_examples(x[order], result.x_adv[order], y[order], result.predictions[order], loaded.saved.class_names,
                      staging / "examples.png")  # fmt: skip
    console.print(
        f"clean accuracy {report.clean_accuracy:.4f}, robust accuracy {report.robust_accuracy:.4f} "
        f"({attack}, eps {eps} {norm}); written {out / 'attack.json'} and {out / 'examples.png'}"
    )


def _print_ensemble(report: object) -> None:
    """The ensemble's table: per attack, the examples it ran on and broke, and the robust accuracy after it."""
    from rich.table import Table

    table = Table(title=f"AutoAttack ({report.preset}) at {report.norm} eps {report.eps:g} on {report.n} examples")
    for column in ("attack", "attacked", "broken", "robust accuracy after"):
        table.add_column(column, justify="left" if column == "attack" else "right")
    table.add_row("clean", str(report.n), "", f"{report.clean_accuracy:.4f}")
    for row in report.rows:
        table.add_row(row.attack, str(row.attacked), str(row.broken), f"{row.robust_accuracy:.4f}")
    console.print(table)
    for flag in report.flags:
        console.print(f"[yellow]flag:[/] {flag}")


def robustness(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset (built-in name, folder, .npz, IDX); its test split is used."),
    eps: float = typer.Option(None, help="AutoAttack's budget (default: the data's published one, with its source)."),
    norm: str = typer.Option("linf", help="AutoAttack's norm: linf | l2."),
    preset: str = typer.Option("standard", help="AutoAttack preset: standard (Croce & Hein 2020) | fast (weaker)."),
    n: int = typer.Option(200, help="Test examples."),
    linf: str = typer.Option("0,0.01,0.02,0.05,0.1", help="Comma-separated L-inf budgets."),
    l2: str = typer.Option("0,0.25,0.5,1,2", help="Comma-separated L2 budgets."),
    steps: int = typer.Option(10, help="PGD steps per budget."),
    restarts: int = typer.Option(5, help="PGD random restarts per budget."),
    ara_steps: int = typer.Option(100, help="Steps of the minimum-norm (DDN) attack for ARA."),
    out: Path = typer.Option(Path("runs/robustness"), help="Folder for robustness.json, curves.png, ara.png."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0),
) -> None:
    """Robust accuracy under AutoAttack (the field's standard evaluation) with its per-attack table;
    accuracy-vs-eps curves (PGD, L-inf and L2) and the ARA score (Woods et al. 2019). A black-box
    model (an ONNX graph run by onnxruntime) gets Square alone: an upper bound, said so."""
    import torch

    from trusttango.cli._common import recorded_data
    from trusttango.report.verdicts import threat_model
    from trusttango.robust import AutoAttack

    threat_model(data or "", eps, norm)  # bad --eps / --norm refused before any long work
    check_output(out, force, [model, data])
    budgets = {"linf": floats(linf, "--linf"), "l2": floats(l2, "--l2")}
    loaded = load_model_and_data(model, data, seed=seed)
    threat = threat_model(recorded_data(loaded.saved, data, model), eps, norm)
    x, y = first(loaded.data, n)
    torch.manual_seed(seed)
    net, black_box = loaded.model, loaded.saved.meta.get("black_box")
    if black_box:
        console.print(f"{model}: a black box ({black_box}): Square alone, whose robust accuracy is an upper bound; "
                      "the curves and ARA need gradients and are not run")  # fmt: skip
    preset = "square" if black_box else preset
    ensemble = AutoAttack(net, eps=threat.eps, norm=threat.norm, preset=preset).evaluate(x, y)
    _print_ensemble(ensemble)
    doc = {"autoattack": {**ensemble.to_dict(), "eps_source": threat.source}, "black_box": black_box}
    with atomic_output(out) as staging:
        if not black_box:
            _gradient_figures(net, (x, y), budgets, (steps, restarts, ara_steps), staging, doc, model.name)
        (staging / "robustness.json").write_text(json.dumps(doc, indent=2))
    console.print(
        f"robust accuracy {ensemble.robust_accuracy:.4f} under AutoAttack ({preset}) at {threat.norm} eps "
        f"{threat.eps:g} ({threat.source}); written to {out}"
    )


def _gradient_figures(net, data: tuple, budgets: dict, settings: tuple, out: Path, doc: dict, label: str) -> None:
    """The PGD accuracy-vs-eps curves and ARA of ``data`` (x, y) into ``doc`` and ``out`` (curves.png,
    ara.png, the model called ``label``), printed; ``settings``: PGD's steps and restarts, ARA's DDN steps."""
    from trusttango.robust import MinNormL2, ara, plot_ara, plot_curves, robustness_curve

    (x, y), (steps, restarts, ara_steps) = data, settings
    curves = [
        robustness_curve(net, x, y, eps, norm=norm, steps=steps, restarts=restarts) for norm, eps in budgets.items()
    ]
    score = ara(net, x, y, MinNormL2(net, steps=ara_steps))
    doc.update(curves=[c.to_dict() for c in curves], ara=score.to_dict())
    plot_curves(curves, out / "curves.png")
    plot_ara({label: score}, out / "ara.png")
    for c in curves:
        points = zip(c.eps, c.accuracy, strict=True)
        console.print(f"{c.norm}: " + ", ".join(f"eps {e:g} acc {a:.3f}" for e, a in points))
    bracket = f"; {score.unbroken} unbroken, {score.ara_unbroken_at_zero:.5f} at 0" if score.unbroken else ""
    console.print(f"ARA {score.ara:.5f} (clean accuracy {score.clean_accuracy:.4f}{bracket})")


def register(app: typer.Typer) -> None:
    """Add ``attack`` and ``robustness`` to the CLI."""
    app.command()(attack)
    app.command()(robustness)
