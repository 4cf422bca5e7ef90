"""CLI: ``explain`` (attribution overlays, per-input scores, the method comparison table) and
``tcav`` (concept scores of image folders)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.cli._common import (
    FORCE_OPTION,
    check_compatible,
    console,
    items,
    model_argument,
    model_dir,
    recorded_data,
)
from trusttango.errors import require
from trusttango.outputs import atomic_output, check_output

FILES_HELP = "Image files and/or folders of images (or give --data)."
DATA_HELP = "A dataset (built-in name, image folder, .npz or IDX file): its first --limit test examples."


def _inputs(saved, files: list[Path] | None, data: str, limit: int, label: int | None = None):
    """``(names, batch)``: the image ``files`` or the first ``limit`` test examples of ``data``
    (of class ``label`` if given), checked against the model's input shape."""
    import torch

    from trusttango.data import load_data, load_images
    from trusttango.data.files import image_files

    require(bool(files) != bool(data), "expected image files / folders or --data NAME (one of the two)")
    if files:
        paths = image_files(files)[:limit]
        return [f.stem for f in paths], load_images(paths, tuple(saved.config.input_shape))
    test = load_data(data).test
    check_compatible(saved, test)
    idx = (test.y == label).nonzero().squeeze(1) if label is not None else torch.arange(len(test))
    idx = idx[:limit]
    require(len(idx) > 0, f"{data}: no test examples of class {label}")
    return [f"{Path(data).name}_{int(i)}" for i in idx], test.x[idx]


def _class_index(target: str, class_names: list[str]) -> int:
    """A class given by name or index."""
    if target in class_names:
        return class_names.index(target)
    require(
        target.isdigit() and int(target) < len(class_names),
        f"--target: expected a class name or index of {', '.join(class_names)}, got {target!r}",
    )
    return int(target)


def explain(
    model: Path = model_argument(),
    files: list[Path] = typer.Argument(None, help=FILES_HELP, show_default=False),
    data: str = typer.Option("", "--data", help=DATA_HELP + " Default (no FILES): the data the model was trained on."),
    method: str = typer.Option("gradcam,guided,saliency", help="Comma-separated methods (see trusttango.explain)."),
    target: str = typer.Option("", help="Class to explain, name or index (default: each input's predicted class)."),
    layer: str = typer.Option("", help="Layer of the CAM methods, a module name (default: the last conv layer)."),
    out: Path = typer.Option(Path("runs/explain"), help="Folder for the PNG overlays and scores.json."),
    force: bool = FORCE_OPTION,
    limit: int = typer.Option(16, min=1, help="At most this many inputs."),
    compare: bool = typer.Option(False, "--compare", help="Also write the metrics table compare.csv / compare.json."),
    seed: int = typer.Option(0, help="Seed of the random draws (SmoothGrad noise, perturbation jitter)."),
) -> None:
    """Explain predictions: PNG overlays (input | heatmap | overlay) per input and a JSON of scores."""
    _seed(seed)
    from trusttango.explain.cam import find_layer
    from trusttango.explain.compare import explain_inputs, methods
    from trusttango.explain.figures import save_overlays
    from trusttango.models import load_model

    factories = methods(items(method, "--method"), layer or None)
    check_output(out, force, [model, data, *(files or [])])
    saved = load_model(model_dir(model))
    net = saved.model.eval()
    if layer:
        find_layer(net, layer)
    k = _class_index(target, saved.class_names) if target else None
    names, x = _inputs(saved, files, data or ("" if files else recorded_data(saved, None, model)), limit)
    result = explain_inputs(net, x, factories, k)
    records = [result.record(i, name, saved.class_names) for i, name in enumerate(names)]
    with atomic_output(out) as staging:
        for i, name in enumerate(names):
            save_overlays(x[i], result.maps(i), staging / f"{name}.png", result.title(i, name, saved.class_names))
        (staging / "scores.json").write_text(json.dumps(records, indent=2))
        if compare:
            _write_comparison(net, x, result.target, factories, staging)
    console.print(f"{len(names)} overlays and scores.json written to {out}")


def _write_comparison(net, x, target, factories: dict, out: Path) -> None:
    """``compare.json`` / ``compare.csv`` of :func:`~trusttango.explain.compare_methods`, printed as a table."""
    from trusttango.explain.compare import compare_methods

    rows = compare_methods(net, x, target, factories)
    (out / "compare.json").write_text(json.dumps(rows, indent=2))
    with (out / "compare.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = Table(*rows[0].keys(), title="explanation metrics")
    for r in rows:
        table.add_row(*(v if isinstance(v, str) else f"{v:.3f}" for v in r.values()))
    Console().print(table)


def tcav(
    model: Path = model_argument(),
    files: list[Path] = typer.Argument(None, help="Images of the target class: files / folders (or give --data)."),
    data: str = typer.Option("", "--data", help="A dataset: its first --limit test examples of the target class."),
    concept: list[Path] = typer.Option(..., help="A folder of concept example images (repeat for several)."),
    random: list[Path] = typer.Option(..., help="A folder of random example images (repeat, at least 3)."),
    target: str = typer.Option(..., help="Class name or index whose logit is explained."),
    layer: str = typer.Option("", help="Layer name (default: the last conv layer)."),
    out: Path = typer.Option(Path("runs/tcav"), help="Folder for tcav.json and tcav.png."),
    force: bool = FORCE_OPTION,
    limit: int = typer.Option(100, min=1, help="At most this many inputs and examples per folder."),
    alpha: float = typer.Option(0.05, help="Significance level of the two-sided t-test."),
    seed: int = typer.Option(0, help="Seed of the concept classifiers' training."),
) -> None:
    """TCAV scores (Kim et al. 2018) of concept image folders for a class, with random-set significance."""
    _seed(seed)
    from trusttango.explain.cam import find_layer
    from trusttango.explain.concepts import load_image_set
    from trusttango.explain.concepts import tcav as run_tcav
    from trusttango.explain.figures import save_tcav_bars
    from trusttango.models import load_model

    saved = load_model(model_dir(model))
    require(len(random) >= 3, f"--random: expected at least 3 folders of random images, got {len(random)}")
    check_output(out, force, [model, data, *(files or []), *concept, *random])
    net = saved.model.eval()
    shape = tuple(saved.config.input_shape)
    k = _class_index(target, saved.class_names)
    find_layer(net, layer or None)
    _, x = _inputs(saved, files, data, limit, label=k)
    randoms = [load_image_set(r, shape, limit) for r in random]
    examples = {c.name: load_image_set(c, shape, limit) for c in concept}
    results = {n: run_tcav(net, layer or None, x, k, ex, randoms, alpha) for n, ex in examples.items()}
    record = {
        "target": saved.class_names[k],
        "layer": layer or "last conv",
        "inputs": len(x),
        "concepts": {n: r.to_dict() for n, r in results.items()},
    }
    with atomic_output(out) as staging:
        (staging / "tcav.json").write_text(json.dumps(record, indent=2))
        save_tcav_bars(results, staging / "tcav.png", f"TCAV for {saved.class_names[k]} at {record['layer']}")
    table = Table("concept", "TCAV", "random", "p", "significant", title=f"TCAV: {saved.class_names[k]}")
    for n, r in results.items():
        table.add_row(n, f"{r.score:.3f}", f"{r.null_score:.3f}", f"{r.p_value:.3g}", "yes" if r.significant else "no")
    Console().print(table)


def _seed(seed: int) -> None:
    import numpy as np
    import torch

    np.random.seed(seed)
    torch.manual_seed(seed)


def register(app: typer.Typer) -> None:
    """Add ``explain`` and ``tcav`` to the CLI."""
    app.command()(explain)
    app.command()(tcav)
