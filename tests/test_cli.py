"""The CLI end to end, through a real subprocess: train, evaluate, predict, datasets, errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from trusttango.models import save_model
from trusttango.models.io import SavedModel

CLI = [sys.executable, "-m", "trusttango.cli"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def assert_clean_error(proc: subprocess.CompletedProcess, needle: str) -> None:
    """Exit status 2, the message on one line, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory, digits, digits_model) -> Path:
    path = tmp_path_factory.mktemp("cli") / "model"
    save_model(SavedModel(digits_model, digits_model.config, digits.class_names, {"seed": 0}), path)
    return path


def test_help_on_every_command():
    for cmd in ("train", "evaluate", "predict", "datasets"):
        assert "--help" in run(cmd, "--help").stdout or "Usage" in run(cmd, "--help").stdout


def test_datasets_lists_builtins():
    out = run("datasets").stdout
    assert "fashion-mnist" in out and "digits" in out and "mnist-5k" in out


def test_train_then_evaluate_then_predict(tmp_path):
    model_dir = tmp_path / "m"
    run("train", "--data", "digits", "--epochs", "8", "--depth", "2", "--batch-size", "64", "--lr", "0.003",
        "--out", str(model_dir))  # fmt: skip
    config = json.loads((model_dir / "config.json").read_text())
    assert config["metrics"]["test_accuracy"] > 0.85 and config["seed"] == 0
    run("evaluate", str(model_dir), "--data", "digits", "--out", str(tmp_path / "eval"))
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(config["metrics"]["test_accuracy"])
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000


def test_predict_folder_to_csv(tmp_path, digits_dir, digits):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        img = (digits.test.x[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(img, "L").save(folder / f"{i}_{int(digits.test.y[i])}.png")
    out = tmp_path / "pred.csv"
    run("predict", str(digits_dir), str(folder), "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6
    correct = sum(r["class"] == Path(r["file"]).stem.split("_")[1] for r in rows)
    assert correct >= 5
    assert all(abs(sum(float(v) for k, v in r.items() if k.startswith("p_")) - 1) < 1e-3 for r in rows)


def test_error_exits(tmp_path, digits_dir):
    assert_clean_error(run("train", "--data", str(tmp_path / "none"), ok=False), "no such file or folder")
    assert_clean_error(run("train", "--data", "digits", "--backbone", "vgg", ok=False), "unknown backbone 'vgg'")
    assert_clean_error(run("evaluate", str(tmp_path / "nomodel"), ok=False), "model directory not found")
    assert_clean_error(run("evaluate", str(digits_dir), "--data", "mnist-5k", ok=False), "model expects inputs shaped")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert_clean_error(run("predict", str(digits_dir), str(bad), ok=False), "bad.png")
    proc = run("train", "--no-such-flag", ok=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
