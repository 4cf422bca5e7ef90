"""``trusttango tcav``: TCAV from concept image folders written from real Fashion-MNIST images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from trusttango.cli import app
from trusttango.errors import InputError
from trusttango.models import save_model
from trusttango.models.io import SavedModel

CLI = [str(Path(sys.executable).with_name("trusttango"))]
SNEAKER, TROUSER = 7, 1


def _write(folder: Path, x: torch.Tensor) -> Path:
    folder.mkdir(parents=True)
    for i, img in enumerate(x):
        Image.fromarray((img[0].numpy() * 255).round().astype("uint8")).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def setup(fmnist_small, fmnist_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("tcav")
    train, test = fmnist_small.train, fmnist_small.test
    save_model(SavedModel(fmnist_model, fmnist_model.config, train.class_names), root / "model")
    g = torch.Generator().manual_seed(0)
    randoms = [_write(root / f"random{i}", train.x[torch.randperm(len(train), generator=g)[:30]]) for i in range(5)]
    return {
        "model": root / "model",
        "inputs": _write(root / "inputs", test.x[test.y == SNEAKER][:40]),
        "sneaker": _write(root / "concepts" / "sneaker", train.x[train.y == SNEAKER][:40]),
        "trouser": _write(root / "concepts" / "trouser", train.x[train.y == TROUSER][:40]),
        "randoms": randoms,
    }


def run(setup, *extra: str, randoms: list[Path] | None = None, target: str = "Sneaker") -> subprocess.CompletedProcess:
    args = [*CLI, "tcav", str(setup["model"]), str(setup["inputs"]), "--target", target, "--layer", "backbone.19"]
    args += [f"--random={r}" for r in (setup["randoms"] if randoms is None else randoms)]
    return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=300)


def test_tcav_cli_scores_concept_folders(setup, tmp_path):
    out = tmp_path / "out"
    res = run(setup, f"--concept={setup['sneaker']}", f"--concept={setup['trouser']}", "--out", str(out))
    assert res.returncode == 0, res.stderr
    record = json.loads((out / "tcav.json").read_text())
    assert record["target"] == "Sneaker" and record["inputs"] == 40
    sneaker, trouser = record["concepts"]["sneaker"], record["concepts"]["trouser"]
    assert len(sneaker["scores"]) == len(sneaker["null_scores"]) == 5
    assert sneaker["cav_accuracy"] > 0.8 and sneaker["score"] > 0.8 and sneaker["significant"]
    assert sneaker["score"] > trouser["score"] + 0.3  # trouser-ness does not raise the sneaker logit
    assert (out / "tcav.png").stat().st_size > 5000


def test_tcav_cli_bad_input(setup, tmp_path):
    res = run(setup, f"--concept={setup['sneaker']}", randoms=setup["randoms"][:2])
    assert res.returncode == 2 and "--random" in res.stderr
    (tmp_path / "empty").mkdir()
    base = [str(setup["model"]), str(setup["inputs"]), *(f"--random={r}" for r in setup["randoms"])]
    for extra, message in [
        ([f"--concept={setup['sneaker']}", "--target", "Jacket"], "--target"),
        ([f"--concept={tmp_path / 'empty'}", "--target", "7"], "at least 2 images"),
        ([f"--concept={setup['sneaker']}", "--target", "7", "--layer", "nope"], "no module named 'nope'"),
    ]:
        result = CliRunner().invoke(app, ["tcav", *base, *extra])  # in-process: the same InputError main() maps to 2
        assert isinstance(result.exception, InputError) and message in str(result.exception)
