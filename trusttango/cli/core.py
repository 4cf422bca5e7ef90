"""CLI: the foundation commands ``datasets``, ``train``, ``evaluate`` and ``predict``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.cli._common import (
    FORCE_OPTION,
    console,
    data_option,
    load_model_and_data,
    model_argument,
    model_dir,
)
from trusttango.errors import require
from trusttango.outputs import atomic_output, check_output

PHYSICAL_BATCH_OPTION = typer.Option(
    None,
    min=0,
    metavar="N",  # a short metavar leaves room for the long option name in an 80-column help
    help="DP virtual batches: at most N examples per pass, same lots and accounting "
    "(default 256; 0: each lot in one pass).",
)


def datasets() -> None:
    """List the built-in datasets (all offline)."""
    from trusttango.data import describe

    table = Table("name", "modality", "description", "source")
    for b in describe():
        table.add_row(b.name, b.modality, b.description, b.source)
    Console().print(table)


def train(
    data: str = data_option("fashion-mnist"),
    out: Path = typer.Option(Path("runs/model"), help="Model directory to write."),
    force: bool = FORCE_OPTION,
    backbone: str = typer.Option("small_cnn", help="small_cnn | mobilenet_v2 | efficientnet_b0 | resnet18"),
    width: float = typer.Option(0.5, help="Width multiplier of the backbone."),
    depth: int = typer.Option(3, help="Stages of the small CNN."),
    input_size: int = typer.Option(0, help="Side the backbone sees (0: from the data)."),
    activation: str = typer.Option("relu", help="relu | half_huber | gelu | silu"),
    norm: str = typer.Option("batch", help="batch | group | none"),
    augment: str = typer.Option("none", help="none | shift | flip_shift"),
    epochs: int = typer.Option(4, min=1, metavar="N"),
    budget: float = typer.Option(0.0, help="Wall-clock training budget in seconds (0: none)."),
    batch_size: int = typer.Option(128, min=1, metavar="N"),
    lr: float = typer.Option(2e-3),
    optimizer: str = typer.Option("adamw", help="adamw | adam | sgd"),
    schedule: str = typer.Option("onecycle", help="onecycle | cosine | step | constant"),
    patience: int = typer.Option(0, help="Early stopping after N epochs without improvement (0: off)."),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    skip_corrupt: bool = typer.Option(False, "--skip-corrupt", help="Skip unreadable images (counted in a warning)."),
    dp: bool = typer.Option(False, "--dp", help="Train with DP-SGD (Opacus); BatchNorm becomes GroupNorm."),
    epsilon: float = typer.Option(0.0, help="DP target epsilon for the whole run (with --dp)."),
    delta: float = typer.Option(0.0, help="DP delta (0: min(1e-5, 0.1/N))."),
    max_grad_norm: float = typer.Option(1.0, help="DP per-example clipping norm C."),
    noise_multiplier: float = typer.Option(0.0, help="DP noise multiplier sigma (instead of --epsilon)."),
    accountant: str = typer.Option("rdp", help="DP accountant (an upper bound on epsilon): rdp | prv"),
    max_physical_batch_size: int | None = PHYSICAL_BATCH_OPTION,
    defence: str = typer.Option("none", help="Robustness defence: none | adversarial | lipschitz"),
    defence_eps: float = typer.Option(0.1, help="Adversarial training L-inf budget (--defence adversarial)."),
    defence_method: str = typer.Option("pgd", help="Adversarial examples: pgd | fgsm (random start)."),
    psi: float = typer.Option(1.0, help="Initial input-gradient weight (--defence lipschitz)."),
    target_ce: float = typer.Option(0.6, help="CE the adaptive psi aims at (--defence lipschitz)."),
    zoom: bool = typer.Option(False, "--zoom", help="Zoom-in classifier: low-res global model + attended crop."),
    zoom_canvas: int = typer.Option(0, help="With --zoom: paste images on a noisy canvas of this side (0: off)."),
) -> None:
    """Train a model with the one training loop and save it as a model directory."""
    from trusttango.data import load_data
    from trusttango.models import save_model
    from trusttango.robust.defences import defence_hooks
    from trusttango.train import TrainConfig
    from trusttango.workflow import train_model

    check_output(out, force, [data])
    splits = load_data(data, seed=seed, skip_corrupt=skip_corrupt)
    tc = TrainConfig(epochs=epochs, budget_s=budget or None, batch_size=batch_size, optimizer=optimizer, lr=lr,
                     schedule=schedule, patience=patience or None, seed=seed, device=device)  # fmt: skip
    options = dict(backbone=backbone, width=width, depth=depth, activation=activation, norm=norm, augment=augment)
    options |= {"input_size": input_size} if input_size else {}
    hooks = defence_hooks(defence, defence_eps, defence_method, psi, target_ce)
    if dp:  # DP-SGD runs first
        hooks.insert(0, _dp_hook(epsilon, delta, max_grad_norm, noise_multiplier, accountant, max_physical_batch_size))
        options["norm"] = "group"
    if zoom:
        return _train_zoom(splits, tc, out, zoom_canvas, bool(hooks), options)
    saved = train_model(splits, tc, hooks, **options)
    saved.meta["data"] = data  # what --data said, so later commands can default to it
    with atomic_output(out) as staging:
        save_model(saved, staging)
    console.print(f"test accuracy {saved.meta['metrics']['test_accuracy']:.4f}; model written to {out}")


def _dp_hook(
    epsilon: float, delta: float, max_grad_norm: float, noise_multiplier: float, accountant: str, physical: int | None
):
    """The DP-SGD hook of ``train --dp`` (0 means "not given" for epsilon, delta and sigma;
    ``--max-physical-batch-size 0`` means each lot in one pass)."""
    from trusttango.privacy.dp import DPSGD, PHYSICAL_BATCH

    hook = DPSGD(
        epsilon=epsilon or None,
        delta=delta or None,
        max_grad_norm=max_grad_norm,
        noise_multiplier=noise_multiplier or None,
        accountant=accountant,
        max_physical_batch_size=PHYSICAL_BATCH if physical is None else (physical or None),
    )  # its settings checked before anything is said
    console.print("DP-SGD: GroupNorm instead of BatchNorm (no statistics shared across examples)")
    return hook


def _train_zoom(splits, tc, out: Path, canvas: int, has_hooks: bool, options: dict) -> None:
    from trusttango.detect.zoom import train_and_save_zoom

    require(not has_hooks, "--zoom: cannot be combined with --dp or --defence")
    with atomic_output(out) as staging:
        metrics = train_and_save_zoom(splits, tc, staging, canvas, **options)
    console.print(f"zoom-in test accuracy {metrics['test_accuracy']:.4f}; model written to {out}")


def evaluate_cmd(
    model: Path = model_argument(),
    data: str = data_option(help="Dataset to evaluate on (its test split)."),
    out: Path = typer.Option(Path("runs/eval"), help="Folder for metrics.json and confusion.png."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0, help="Seed of the split (user data)."),
) -> None:
    """Accuracy, per-class precision/recall and a confusion-matrix PNG on the test split."""
    from trusttango.evaluate import evaluate, plot_confusion

    check_output(out, force, [model, data])
    loaded = load_model_and_data(model, data, seed=seed)
    result = evaluate(loaded.model, loaded.data)
    with atomic_output(out) as staging:
        (staging / "metrics.json").write_text(json.dumps(result.to_dict(), indent=2))
        plot_confusion(result, staging / "confusion.png")
    table = Table("class", "precision", "recall", "support", title=f"accuracy {result.accuracy:.4f}")
    for name, p, r, s in zip(result.class_names, result.precision, result.recall, result.support, strict=False):
        table.add_row(name, f"{p:.3f}", f"{r:.3f}", str(s))
    Console().print(table)
    console.print(f"written {out / 'metrics.json'} and {out / 'confusion.png'}")


def predict(
    model: Path = model_argument(),
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images."),
    out: Path = typer.Option(Path("predictions.csv"), help="CSV to write: file, class, probabilities."),
    force: bool = FORCE_OPTION,
) -> None:
    """Predict the class of image files (or every image in folders) into a CSV."""
    from trusttango.data import load_images
    from trusttango.data.files import image_files
    from trusttango.evaluate import predict_proba
    from trusttango.models import load_model

    check_output(out, force, [model, *inputs], kind="file")
    saved = load_model(model_dir(model))
    files = image_files(inputs)
    probs = predict_proba(saved.model, load_images(files, saved.config.input_shape)).numpy()
    with atomic_output(out, kind="file") as staging, staging.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "class", *[f"p_{c}" for c in saved.class_names]])
        for f, p in zip(files, probs, strict=False):
            writer.writerow([str(f), saved.class_names[int(p.argmax())], *[f"{v:.6f}" for v in p]])
    console.print(f"{len(files)} predictions written to {out}")


def register(app: typer.Typer) -> None:
    """Add the foundation commands to the CLI."""
    app.command()(datasets)
    app.command()(train)
    app.command(name="evaluate")(evaluate_cmd)
    app.command()(predict)
