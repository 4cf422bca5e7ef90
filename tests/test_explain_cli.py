"""``trusttango explain`` end to end: overlays, scores, comparison table, bad input exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from trusttango.models import save_model
from trusttango.models.io import SavedModel

CLI = [str(Path(sys.executable).with_name("trusttango"))]


@pytest.fixture(scope="module")
def model_dir(digits, digits_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("explain") / "model"
    save_model(SavedModel(digits_model, digits_model.config, digits.train.class_names), path)
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "explain", *args], capture_output=True, text=True, timeout=300)


def test_explain_dataset_writes_overlays_scores_and_table(model_dir, tmp_path):
    out = tmp_path / "out"
    res = run(str(model_dir), "digits", "--method", "gradcam,guided", "--limit", "3", "--out", str(out), "--compare")
    assert res.returncode == 0, res.stderr
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 3 and Image.open(pngs[0]).size[0] > 300  # three panels wide
    scores = json.loads((out / "scores.json").read_text())
    assert len(scores) == 3 and set(scores[0]["methods"]) == {"gradcam", "guided"}
    table = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in table] == ["gradcam", "guided"] and 0 < table[0]["deletion_game_area"] <= 1


def test_explain_image_files(model_dir, digits, tmp_path):
    img = (digits.test.x[0, 0].numpy() * 255).astype("uint8")
    Image.fromarray(img).save(tmp_path / "seven.png")
    res = run(str(model_dir), str(tmp_path / "seven.png"), "--method", "saliency", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "seven.png").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["digits", "--method", "magic"], "unknown 'magic'"),
        (["no-such-data"], "no such file"),
        (["fashion-mnist", "--limit", "2"], "model expects"),
    ],
)
def test_explain_bad_input_exit_2(model_dir, tmp_path, args, message):
    res = run(str(model_dir), *args, "--out", str(tmp_path / "bad"))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
