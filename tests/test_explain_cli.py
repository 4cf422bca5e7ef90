"""``trusttango explain`` end to end: overlays, scores, comparison table, ``--target``, ``--layer``,
an automl output folder, bad input exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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
    res = run(
        str(model_dir), "--data", "digits", "--method", "gradcam,guided", "--limit", "3", "--out", str(out), "--compare"
    )
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
        (["--data", "digits", "--method", "magic"], "unknown 'magic'"),
        (["--data", "no-such-data"], "no such file"),
        (["no-such-image.png"], "no such file"),
        (["--data", "fashion-mnist", "--limit", "2"], "model expects"),
        ([], "--data"),
    ],
)
def test_explain_bad_input_exit_2(model_dir, tmp_path, args, message):
    res = run(str(model_dir), *args, "--out", str(tmp_path / "bad"))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_explain_target_changes_the_explained_class(model_dir, digits, tmp_path):
    common = [str(model_dir), "--data", "digits", "--method", "gradcam", "--limit", "2"]
    outs = {t: tmp_path / f"target{t}" for t in (3, 5)}
    for t, out in outs.items():
        res = run(*common, "--target", str(t), "--out", str(out))
        assert res.returncode == 0, res.stderr
    records = {t: json.loads((out / "scores.json").read_text()) for t, out in outs.items()}
    names = digits.test.class_names
    for t, recs in records.items():
        assert [r["target_index"] for r in recs] == [t, t] and {r["target"] for r in recs} == {names[t]}
    png = records[3][0]["input"] + ".png"
    assert np.abs(_pixels(outs[3] / png) - _pixels(outs[5] / png)).max() > 0  # another class, another heatmap


def test_explain_layer_option(model_dir, tmp_path):
    common = [str(model_dir), "--data", "digits", "--method", "gradcam,saliency", "--limit", "1"]
    bad = run(*common, "--layer", "backbone.nope", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "'backbone.nope'" in bad.stderr
    good = run(*common, "--layer", "backbone.10", "--out", str(tmp_path / "good"))
    assert good.returncode == 0, good.stderr
    record = json.loads((tmp_path / "good" / "scores.json").read_text())[0]
    assert set(record["methods"]) == {"gradcam", "saliency"} and record["target"] == record["class"]


def test_explain_automl_output_folder_uses_best_model(model_dir, tmp_path):
    search = tmp_path / "search"
    shutil.copytree(model_dir, search / "best_model")
    res = run(str(search), "--data", "digits", "--method", "saliency", "--limit", "1", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    assert "best_model" in res.stderr and len(json.loads((tmp_path / "o" / "scores.json").read_text())) == 1
