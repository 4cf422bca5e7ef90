"""``trusttango explain``: attribution overlays, per-input scores and the method comparison table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trusttango.errors import require


def _inputs(spec: list[str], shape: tuple[int, ...], limit: int, label: int | None = None) -> tuple[list[str], object]:
    """Image files / folders, or a dataset spec (its first ``limit`` test examples, of class ``label`` if given)."""
    import torch

    from trusttango.data import load_data, load_images
    from trusttango.data.files import IMAGE_SUFFIXES

    paths = [Path(s) for s in spec]
    if len(spec) == 1 and (not paths[0].exists() or paths[0].suffix == ".npz"):
        test = load_data(spec[0]).test
        require(
            tuple(test.input_shape) == tuple(shape),
            f"{spec[0]}: images shaped {test.input_shape}, model expects {shape}",
        )
        idx = (test.y == label).nonzero().squeeze(1) if label is not None else torch.arange(len(test))
        idx = idx[:limit]
        require(len(idx) > 0, f"{spec[0]}: no test examples of class {label}")
        return [f"{spec[0]}_{int(i)}" for i in idx], test.x[idx]
    files: list[Path] = []
    for path in paths:
        require(path.exists(), f"{path}: no such file or folder")
        files += sorted(f for f in path.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    require(len(files) > 0, f"no image files found in {', '.join(spec)}")
    files = files[:limit]
    return [f.stem for f in files], load_images(files, shape)


def _class_index(target: str, class_names: list[str]) -> int:
    """A class given by name or index."""
    if target in class_names:
        return class_names.index(target)
    require(
        target.isdigit() and int(target) < len(class_names),
        f"--target: expected a class name or index of {', '.join(class_names)}, got {target!r}",
    )
    return int(target)


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

    @app.command()
    def tcav(
        model: Path = typer.Argument(..., help="Model directory."),
        inputs: list[str] = typer.Argument(..., help="Images of the target class (files / folders), or a dataset."),
        concept: list[Path] = typer.Option(..., help="A folder of concept example images (repeat for several)."),
        random: list[Path] = typer.Option(..., help="A folder of random example images (repeat, at least 3)."),
        target: str = typer.Option(..., help="Class name or index whose logit is explained."),
        layer: str = typer.Option("", help="Layer name (default: the last conv layer)."),
        out: Path = typer.Option(Path("runs/tcav"), help="Folder for tcav.json and tcav.png."),
        limit: int = typer.Option(100, min=1, help="At most this many inputs and examples per folder."),
        alpha: float = typer.Option(0.05, help="Significance level of the two-sided t-test."),
    ) -> None:
        """TCAV scores (Kim et al. 2018) of concept image folders for a class, with random-set significance."""
        from trusttango.explain.cam import find_layer
        from trusttango.explain.concepts import load_image_set
        from trusttango.explain.concepts import tcav as run_tcav
        from trusttango.explain.figures import save_tcav_bars
        from trusttango.models import load_model

        require(len(random) >= 3, f"--random: expected at least 3 folders of random images, got {len(random)}")
        saved = load_model(model)
        net = saved.model.eval()
        shape = tuple(saved.config.input_shape)
        k = _class_index(target, saved.class_names)
        layer_name = layer or None
        find_layer(net, layer_name)
        _, x = _inputs(inputs, shape, limit, label=k)
        randoms = [load_image_set(r, shape, limit) for r in random]
        examples = {c.name: load_image_set(c, shape, limit) for c in concept}
        results = {n: run_tcav(net, layer_name, x, k, ex, randoms, alpha) for n, ex in examples.items()}
        out.mkdir(parents=True, exist_ok=True)
        record = {
            "target": saved.class_names[k],
            "layer": layer or "last conv",
            "inputs": len(x),
            "concepts": {n: r.to_dict() for n, r in results.items()},
        }
        (out / "tcav.json").write_text(json.dumps(record, indent=2))
        save_tcav_bars(results, out / "tcav.png", f"TCAV for {saved.class_names[k]} at {record['layer']}")
        table = Table("concept", "TCAV", "random", "p", "significant", title=f"TCAV: {saved.class_names[k]}")
        for n, r in results.items():
            null = sum(r.null_scores) / len(r.null_scores)
            table.add_row(n, f"{r.score:.3f}", f"{null:.3f}", f"{r.p_value:.3g}", "yes" if r.significant else "no")
        Console().print(table)
