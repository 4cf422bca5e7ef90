"""Robustness CLI end to end: train with a defence, attack, robustness curves + ARA, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("trusttango"))


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def defended_model(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robust") / "model"
    args = ("train", "--data", "digits", "--depth", "2", "--epochs", "2", "--out", str(out))
    proc = _run(*args, "--defence", "adversarial", "--defence-method", "fgsm", "--defence-eps", "0.1")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((out / "config.json").read_text())
    assert "adversarial" in json.dumps(meta)  # the hook's meta is recorded with the model
    return out


def test_attack_and_robustness_commands(defended_model, tmp_path):
    proc = _run(
        "attack",
        str(defended_model),
        "--data",
        "digits",
        "--attack",
        "pgd",
        "--eps",
        "0.2",
        "--n",
        "60",
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "attack.json").read_text())
    assert summary["robust_accuracy"] < summary["clean_accuracy"]
    assert (tmp_path / "examples.png").stat().st_size > 5000
    out = tmp_path / "rob"
    args = ("--n", "24", "--steps", "3", "--ara-steps", "20", "--linf", "0,0.1,0.3", "--l2", "0,1,3", "--out", str(out),
            "--preset", "fast")  # fmt: skip  # the standard preset's run is the audit's (test_report.py)
    proc = _run("robustness", str(defended_model), "--data", "digits", *args)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "robustness.json").read_text())
    assert doc["ara"]["ara"] > 0 and len(doc["curves"]) == 2
    autoattack = doc["autoattack"]  # the headline: the ensemble at the data's budget, its source named
    assert autoattack["preset"] == "fast" and autoattack["eps"] == 0.1 and autoattack["norm"] == "linf"
    assert "Wong & Kolter" in autoattack["eps_source"]
    assert [row["attack"] for row in autoattack["rows"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert autoattack["robust_accuracy"] == autoattack["rows"][-1]["robust_accuracy"] <= autoattack["clean_accuracy"]
    pgd_at_01 = doc["curves"][0]["accuracy"][1]  # PGD-3 at L-inf 0.1 on the same images
    assert autoattack["robust_accuracy"] <= pgd_at_01 and "apgd-ce" in proc.stderr and "broken" in proc.stderr
    proc = _run("attack", str(defended_model), "--data", "digits", "--attack", "autoattack", "--eps", "0.1",
                "--preset", "fast", "--n", "24", "--out", str(tmp_path / "aa"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "aa" / "attack.json").read_text())
    assert summary["ensemble"]["preset"] == "fast" and summary["robust_accuracy"] == pytest.approx(
        summary["ensemble"]["robust_accuracy"]
    )
    assert (out / "curves.png").exists() and (out / "ara.png").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (("--attack", "nope"), "--attack"),
        (("--eps", "-1"), "eps"),
        (("--eps", "50"), "absurd"),
    ],
)
def test_bad_input_exits_2(defended_model, tmp_path, args, message):
    proc = _run("attack", str(defended_model), "--data", "digits", "--n", "8", "--out", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [(("--eps", "nan"), "--eps"), (("--eps", "-0.1"), "--eps"), (("--norm", "l1"), "--norm"),
     (("--preset", "quick"), "preset")],
)  # fmt: skip
def test_robustness_bad_input_exits_2(defended_model, tmp_path, args, message):
    proc = _run("robustness", str(defended_model), "--data", "digits", "--n", "8", "--out", str(tmp_path), *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "robustness.json").exists()


def test_unknown_defence_exits_2(tmp_path):
    proc = _run("train", "--data", "digits", "--epochs", "1", "--out", str(tmp_path / "m"), "--defence", "magic")
    assert proc.returncode == 2 and "--defence" in proc.stderr
