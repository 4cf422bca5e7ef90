"""Zoom-in classifier (Amirian et al. 2018, Fig. 3): attention boxes, crops, and the staged training on a real task."""

from __future__ import annotations

import json

import pytest
import torch

from trusttango.data import Splits
from trusttango.detect.zoom import crop, largest_region_boxes, place_on_canvas, train_zoom
from trusttango.errors import InputError
from trusttango.evaluate import evaluate
from trusttango.train import TrainConfig


def test_largest_region_box_and_growth():
    maps = torch.zeros(3, 20, 20)
    maps[0, 2:4, 2:4] = 1.0  # small blob
    maps[0, 10:15, 5:12] = 0.9  # larger blob wins
    maps[1, 18:20, 18:20] = 1.0  # corner blob, grown to 6 and kept inside
    boxes = largest_region_boxes(maps, tau=0.7, min_side=6)
    assert boxes[0].tolist() == [5.0, 9.0, 12.0, 15.0]  # 7 x 5 blob, height grown to 6
    assert boxes[1].tolist() == [14.0, 14.0, 20.0, 20.0]
    assert boxes[2].tolist() == [0.0, 0.0, 20.0, 20.0]  # flat map: the whole image
    with pytest.raises(InputError, match="tau"):
        largest_region_boxes(maps, tau=1.5)


def test_crop_of_exact_box_is_a_copy():
    x = torch.rand(2, 3, 30, 30)
    boxes = torch.tensor([[4.0, 7.0, 14.0, 17.0], [20.0, 0.0, 30.0, 10.0]])
    out = crop(x, boxes, 10)
    torch.testing.assert_close(out[0], x[0, :, 7:17, 4:14])
    torch.testing.assert_close(out[1], x[1, :, 0:10, 20:30])


def test_zoom_beats_the_low_resolution_model(fmnist_small):
    """Fashion-MNIST items at random places on an 84x84 noisy canvas; the global model sees it at 28x28."""
    n_train, n_eval = 1500, 400
    canvas = Splits(
        *(
            place_on_canvas(ds.subset(range(min(n, len(ds)))), 84, noise=0.5, seed=i)
            for i, (ds, n) in enumerate(
                ((fmnist_small.train, n_train), (fmnist_small.val, n_eval), (fmnist_small.test, n_eval))
            )
        )
    )
    zoom = train_zoom(canvas, TrainConfig(epochs=3, batch_size=64, progress=False), low_size=28, crop_size=28)
    test = canvas.test
    boxes = zoom.boxes(test.x)
    cy = torch.as_tensor(test.extra["top"]) + 14
    cx = torch.as_tensor(test.extra["left"]) + 14
    inside = (boxes[:, 0] <= cx) & (cx <= boxes[:, 2]) & (boxes[:, 1] <= cy) & (cy <= boxes[:, 3])
    assert inside.float().mean() > 0.8  # the attention finds the object
    zoomed = evaluate(zoom, test).accuracy
    low = evaluate(zoom.global_model, test).accuracy
    assert zoomed > low + 0.02, (zoomed, low)
    zoom.fusion = "average"
    assert evaluate(zoom, test).accuracy > low


def test_cli_train_zoom_and_reload(tmp_path):
    from typer.testing import CliRunner

    from trusttango.cli import app
    from trusttango.data import load_builtin
    from trusttango.detect.zoom import ZoomClassifier
    from trusttango.models import load_model

    out = tmp_path / "zoom"
    args = ["train", "--data", "digits", "--zoom", "--zoom-canvas", "24", "--input-size", "8", "--depth", "2"]
    result = CliRunner().invoke(app, [*args, "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = load_model(out)  # the zoom-in model directory reads like any model directory
    zoom = saved.model
    assert isinstance(zoom, ZoomClassifier) and saved.class_names == [str(i) for i in range(10)]
    assert tuple(saved.config.input_shape) == (1, 24, 24)
    x = place_on_canvas(load_builtin("digits", seed=0).test, 24, seed=2).x[:50]
    assert zoom(x).shape == (50, 10) and zoom.crops(x).shape == (50, 1, 8, 8)
    bad = CliRunner().invoke(app, [*args, "--defence", "lipschitz", "--out", str(tmp_path / "bad")])
    assert isinstance(bad.exception, InputError)
    document = json.loads((out / "config.json").read_text())
    document["zoom"]["tau"] = "high"
    (out / "config.json").write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"config.json: zoom.tau: Input should be a valid number, got \"high\""):
        load_model(out)


def test_a_fresh_process_reads_a_zoom_model_like_any_model(tmp_path):
    """The format is an installed entry point: ``load_model`` and ``evaluate`` read a zoom-in
    model directory in a new interpreter that never imported ``trusttango.detect``."""
    import subprocess
    import sys

    from typer.testing import CliRunner

    from trusttango.cli import app

    out = tmp_path / "zoom"
    args = ["train", "--data", "digits", "--zoom", "--input-size", "8", "--depth", "2", "--epochs", "1"]
    assert CliRunner().invoke(app, [*args, "--out", str(out)]).exit_code == 0
    probe = (
        f"import sys; from trusttango.models import load_model; print(type(load_model({str(out)!r}).model).__name__)"
    )
    read = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert read.returncode == 0 and read.stdout.strip() == "ZoomClassifier", read.stderr[-800:]
    cli = [
        sys.executable,
        "-m",
        "trusttango.cli",
        "evaluate",
        str(out),
        "--data",
        "digits",
        "--out",
        str(tmp_path / "e"),
    ]
    evaluated = subprocess.run(cli, capture_output=True, text=True)
    assert evaluated.returncode == 0, evaluated.stderr[-800:]
    assert 0 < json.loads((tmp_path / "e" / "metrics.json").read_text())["accuracy"] <= 1
