"""``trusttango explain``: attribution overlays, per-input scores and the method comparison table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.errors import require


def _inputs(spec: list[str], shape: tuple[int, ...], limit: int) -> tuple[list[str], object]:
    """Image files / folders, or a dataset spec (its first ``limit`` test examples)."""
    from trusttango.data import load_data, load_images
    from trusttango.data.files import IMAGE_SUFFIXES

    paths = [Path(s) for s in spec]
    if len(spec) == 1 and (not paths[0].exists() or paths[0].suffix == ".npz"):
        test = load_data(spec[0]).test
        require(
            tuple(test.input_shape) == tuple(shape),
            f"{spec[0]}: images shaped {test.input_shape}, model expects {shape}",
        )
        n = min(limit, len(test))
        return [f"{spec[0]}_{i}" for i in range(n)], test.x[:n]
    files: list[Path] = []
    for path in paths:
        require(path.exists(), f"{path}: no such file or folder")
        files += sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    require(len(files) > 0, f"no image files found in {', '.join(spec)}")
    files = files[:limit]
    return [f.stem for f in files], load_images(files, shape)


def register(app: typer.Typer) -> None:
    @app.command()
    def explain(
        model: Path = typer.Argument(..., help="Model directory."),
        inputs: list[str] = typer.Argument(..., help="Image files / folders, or a dataset (its test split)."),
        method: str = typer.Option("gradcam,guided,saliency", help="Comma-separated methods (see --help-methods)."),
        out: Path = typer.Option(Path("runs/explain"), help="Folder for the PNG overlays and scores.json."),
        limit: int = typer.Option(16, min=1, help="At most this many inputs."),
        compare: bool = typer.Option(False, help="Also write the metrics table compare.csv / compare.json."),
    ) -> None:
        """Explain predictions: PNG overlays (input | heatmap | overlay) per input and a JSON of scores."""
        import torch

        from trusttango.explain import to_heatmap
        from trusttango.explain.compare import compare_methods
        from trusttango.explain.compare import method as lookup
        from trusttango.explain.figures import save_overlays
        from trusttango.explain.metrics import deletion_game, deletion_insertion
        from trusttango.models import load_model

        names = [m.strip() for m in method.split(",") if m.strip()]
        require(bool(names), "--method: expected at least one method name")
        factories = {name: lookup(name) for name in names}
        saved = load_model(model)
        net = saved.model.eval()
        labels, x = _inputs(inputs, tuple(saved.config.input_shape), limit)
        with torch.no_grad():
            probs = net(x).softmax(1)
        pred = probs.argmax(1)
        heat = {name: to_heatmap(f(net).attribute(x, pred), normalize=True) for name, f in factories.items()}
        scores = {
            name: (deletion_game(net, x, h, pred), deletion_insertion(net, x, h, pred)[1]) for name, h in heat.items()
        }
        records = []
        for i, label in enumerate(labels):
            cls = saved.class_names[int(pred[i])]
            title = f"{label}: {cls} ({float(probs[i, pred[i]]):.2f})"
            save_overlays(x[i], {n: h[i] for n, h in heat.items()}, out / f"{label}.png", title)
            per_method = {
                n: {"deletion_game_area": float(a[i]), "deletion_auc": float(d[i])} for n, (a, d) in scores.items()
            }
            records.append(
                {"input": label, "class": cls, "probability": float(probs[i, pred[i]]), "methods": per_method}
            )
        (out / "scores.json").write_text(json.dumps(records, indent=2))
        Console(stderr=True).print(f"{len(labels)} overlays and scores.json written to {out}")
        if compare:
            rows = compare_methods(net, x, pred, factories)
            (out / "compare.json").write_text(json.dumps(rows, indent=2))
            with (out / "compare.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            table = Table(*rows[0].keys(), title="explanation metrics")
            for r in rows:
                table.add_row(*(v if isinstance(v, str) else f"{v:.3f}" for v in r.values()))
            Console().print(table)
