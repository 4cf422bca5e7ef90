"""Our own fuzz suite: bad input to every command. Each case must end with exit status 2, one
line on stderr that names what was wrong, no traceback, and every file that existed before
(the good model, the data, earlier outputs) byte-identical afterwards. Commands run in
process (``trusttango.cli.main``), in a scratch folder, on one tiny model and tiny files."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from trusttango.cli import main
from trusttango.data.files import MAX_PIXELS
from trusttango.models import SavedModel, save_model

pytestmark = pytest.mark.timeout(120)


def _model_variants(world: Path, good: Path) -> None:
    """Bad model folders beside the good one, each with one defect."""
    for name in ("m-type", "m-names", "m-nan", "m-noweights", "m-json", "m-nomodel", "m-shape"):
        shutil.copytree(good, world / name)
    for name, change in (
        ("m-type", lambda d: d["model"].update(num_classes="10")),
        ("m-names", lambda d: d.update(class_names=["a", "b", "c"])),
        ("m-nomodel", lambda d: d.pop("model")),
        ("m-shape", lambda d: d["model"].update(width=1.0)),
    ):
        document = json.loads((world / name / "config.json").read_text())
        change(document)
        (world / name / "config.json").write_text(json.dumps(document))
    state = load_file(good / "model.safetensors")
    next(v for k, v in state.items() if k.endswith("weight")).view(-1)[0] = float("nan")
    save_file(state, world / "m-nan" / "model.safetensors")
    (world / "m-noweights" / "model.safetensors").unlink()
    (world / "m-json" / "config.json").write_text("{not json")
    (world / "m-file").write_text("a file, not a model folder")
    (world / "m-empty").mkdir()


def _data_variants(world: Path) -> None:
    np.savez(world / "d-strings.npz", x=np.array(["a", "b"]), y=np.array([0, 1]))
    np.savez(world / "d-scalar.npz", x=np.array(3.0), y=np.array([0]))
    np.savez(world / "d-hugelabel.npz", x=np.zeros((2, 1, 8, 8)), y=np.array([0, 10**9]))
    np.savez(world / "d-negative.npz", x=np.zeros((2, 1, 8, 8)), y=np.array([0, -3]))
    np.savez(world / "d-y2d.npz", x=np.zeros((2, 1, 8, 8)), y=np.zeros((2, 1), dtype=int))
    np.savez(world / "d-nox.npz", y=np.array([0, 1]))
    (world / "d-zero.npz").write_bytes(b"")
    (world / "d-text.npz").write_text("not an archive")
    side = int(MAX_PIXELS**0.5) + 1
    Image.new("1", (side, side)).save(world / "bomb.png")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(world / "good.png")
    (world / "not-an-image.png").write_text("not a PNG")
    rows = [f"{20 + i},{'MF'[i % 2]},1234{i % 3},{('yes', 'no')[i % 3 > 0]},flu" for i in range(30)]
    (world / "table.csv").write_text("age,sex,zip,smoker,disease\n" + "\n".join(rows))


@pytest.fixture(scope="module")
def world(tmp_path_factory, digits_model, digits) -> Path:
    """The good model, its broken variants, broken data files and earlier outputs."""
    world = tmp_path_factory.mktemp("world")
    good = save_model(SavedModel(digits_model, digits_model.config, digits.class_names), world / "model")
    _model_variants(world, good)
    _data_variants(world)
    for folder in ("out-dir", "concept"):
        (world / folder).mkdir()
        (world / folder / "keep.txt").write_text(f"earlier output in {folder}")
    for folder in ("concept", "random/r0", "random/r1", "random/r2"):
        (world / folder).mkdir(parents=True, exist_ok=True)
        for i in range(3):
            shutil.copy(world / "good.png", world / folder / f"{i}.png")
    (world / "out-file.txt").write_text("an earlier output file")
    (world / "cuda8.yaml").write_text("device: cuda:8\n")  # a GPU no test machine has
    return world


MODEL_COMMANDS = {
    "evaluate": ["evaluate", "{m}", "--data", "digits", "--out", "{t}/e.json"],
    "predict": ["predict", "{m}", "{w}/good.png"],
    "explain": ["explain", "{m}", "--data", "digits", "--limit", "1", "--out", "{t}/x"],
    "tcav": [
        "tcav",
        "{m}",
        "--data",
        "digits",
        "--concept",
        "{w}/concept",
        "--random",
        "{w}/random/r0",
        "--random",
        "{w}/random/r1",
        "--random",
        "{w}/random/r2",
        "--target",
        "0",
    ],
    "attack": ["attack", "{m}", "--data", "digits", "--n", "4", "--out", "{t}/a"],
    "robustness": ["robustness", "{m}", "--data", "digits", "--n", "4", "--out", "{t}/r"],
    "membership": ["membership", "{m}", "--data", "digits", "--n", "10", "--out", "{t}/mi"],
    "fairness": ["fairness", "{m}", "--data", "digits", "--out", "{t}/f"],
    "cleverhans": ["cleverhans", "{m}", "--data", "digits", "--region", "0,0,2,2", "--out", "{t}/c"],
    "detect-fit": ["detect", "fit", "{m}", "--data", "digits", "--n", "8", "--out", "{t}/det"],
    "detect-score": ["detect", "score", "{m}", "--data", "digits", "--detector", "{t}/det"],
    "audit": ["audit", "{m}", "--data", "digits", "--out", "{t}/rep"],
}
BAD_MODELS = {  # folder -> what the one line must say
    "m-missing": "m-missing",
    "m-file": "m-file",
    "m-empty": "m-empty",
    "m-json": "m-json",
    "m-type": "model.num_classes: Input should be a valid integer",
    "m-names": "class_names: 3 names for a model of 10 outputs",
    "m-nomodel": "model: Field required",
    "m-nan": "holds NaN",
    "m-noweights": "model.safetensors",
    "m-shape": "weights do not match",
}
DATA_COMMANDS = {
    "train": ["train", "--data", "{d}", "--epochs", "1", "--out", "{t}/model"],
    "evaluate": ["evaluate", "{w}/model", "--data", "{d}", "--out", "{t}/e.json"],
    "attack": ["attack", "{w}/model", "--data", "{d}", "--n", "4", "--out", "{t}/a"],
    "automl": ["automl", "--data", "{d}", "--budget", "5", "--out", "{t}/search"],
    "federated": ["federated", "--data", "{d}", "--rounds", "1", "--out", "{t}/fed"],
}
BAD_DATA = {
    "d-missing.npz": "d-missing.npz",
    "d-zero.npz": "d-zero.npz: not a readable .npz archive",
    "d-text.npz": "d-text.npz: not a readable .npz archive",
    "d-strings.npz": "x must be a numeric array",
    "d-scalar.npz": "x must be a numeric array",
    "d-hugelabel.npz": "label 1000000000 is at or above the limit",
    "d-negative.npz": "label -3 is negative",
    "d-y2d.npz": "y must be one label per row",
    "d-nox.npz": "missing array 'x'",
    "no-such-builtin": "no-such-builtin",
}
OPTIONS = [  # (id, arguments, what the line must say)
    ("train-width", ["train", "--data", "digits", "--width", "0", "--out", "{t}/m"], "width must lie in"),
    ("train-depth", ["train", "--data", "digits", "--depth", "50", "--out", "{t}/m"], "depth must lie in"),
    ("train-size", ["train", "--data", "digits", "--input-size", "100000", "--out", "{t}/m"], "input_size"),
    ("train-epochs", ["train", "--data", "digits", "--epochs", "0", "--out", "{t}/m"], "'--epochs'"),
    ("train-lr", ["train", "--data", "digits", "--lr", "0", "--out", "{t}/m"], "lr must be > 0"),
    ("train-batch", ["train", "--data", "digits", "--batch-size", "0", "--out", "{t}/m"], "'--batch-size'"),
    (
        "train-device",
        ["train", "--data", "digits", "--device", "cuda:8", "--out", "{t}/m"],
        "device 'cuda:8': this machine has",
    ),
    ("train-backbone", ["train", "--data", "digits", "--backbone", "vgg99", "--out", "{t}/m"], "vgg99"),
    ("train-eps", ["train", "--data", "digits", "--dp", "--epsilon", "-1", "--out", "{t}/m"], "epsilon"),
    (
        "attack-eps",
        ["attack", "{w}/model", "--data", "digits", "--eps", "-1", "--out", "{t}/a"],
        "eps: expected a finite value >= 0",
    ),
    ("attack-name", ["attack", "{w}/model", "--data", "digits", "--attack", "nope", "--out", "{t}/a"], "nope"),
    ("attack-n", ["attack", "{w}/model", "--data", "digits", "--n", "0", "--out", "{t}/a"], "--n: expected >= 1"),
    (
        "attack-steps",
        ["attack", "{w}/model", "--data", "digits", "--steps", "0", "--out", "{t}/a"],
        "steps: expected >= 1",
    ),
    ("attack-norm", ["attack", "{w}/model", "--data", "digits", "--norm", "l7", "--out", "{t}/a"], "l7"),
    (
        "robust-eps",
        ["robustness", "{w}/model", "--data", "digits", "--eps", "-1", "--out", "{t}/r"],
        "robust_eps (--eps) must lie in (0, 1]",
    ),
    (
        "robust-preset",
        ["robustness", "{w}/model", "--data", "digits", "--preset", "x", "--out", "{t}/r"],
        "preset: expected one of",
    ),
    ("explain-method", ["explain", "{w}/model", "--data", "digits", "--method", "nope", "--out", "{t}/x"], "nope"),
    (
        "detect-bits",
        ["detect", "fit", "{w}/model", "--data", "digits", "--method", "squeezing", "--bits", "0", "--out", "{t}/d"],
        "bits must lie in [1, 8], got 0",
    ),
    ("explain-layer", ["explain", "{w}/model", "--data", "digits", "--layer", "nope", "--out", "{t}/x"], "nope"),
    ("explain-target", ["explain", "{w}/model", "--data", "digits", "--target", "99", "--out", "{t}/x"], "99"),
    ("membership-n", ["membership", "{w}/model", "--data", "digits", "--n", "0", "--out", "{t}/mi"], "'--n'"),
    (
        "fairness-groups",
        ["fairness", "{w}/model", "--data", "digits", "--groups", "{w}/none.csv", "--out", "{t}/f"],
        "none.csv",
    ),  # fmt: skip
    ("fairness-no-groups", ["fairness", "{w}/model", "--data", "digits", "--out", "{t}/f"], "no group attributes"),
    (
        "cleverhans-region",
        ["cleverhans", "{w}/model", "--data", "digits", "--region", "a,b", "--out", "{t}/c"],
        "region",
    ),
    ("automl-budget", ["automl", "--data", "digits", "--budget", "0", "--out", "{t}/s"], "budget must be > 0"),
    ("automl-sampler", ["automl", "--data", "digits", "--sampler", "nope", "--out", "{t}/s"], "nope"),
    ("automl-topk", ["automl", "--data", "digits", "--top-k", "0", "--out", "{t}/s"], "--top-k"),
    ("automl-storage", ["automl", "--data", "digits", "--storage", "nosuch://x", "--out", "{t}/s"], "storage"),
    ("automl-resume", ["automl", "--resume", "--out", "{t}/none"], "--resume"),
    ("fed-clients", ["federated", "--data", "digits", "--clients", "0", "--out", "{t}/fed"], "clients"),
    ("fed-fraction", ["federated", "--data", "digits", "--fraction", "2", "--out", "{t}/fed"], "fraction"),
    ("fed-algorithm", ["federated", "--data", "digits", "--algorithm", "x", "--out", "{t}/fed"], "algorithm"),
    ("fed-node-address", ["federated-node", "--superlink", "not-an-address", "--data", "{w}/x.npz"], "HOST:PORT"),
    (
        "anon-k",
        ["anonymize", "--data", "{w}/table.csv", "--k", "0", "--qi", "age", "--out", "{t}/a.csv"],
        "k must be an integer >= 1",
    ),
    ("anon-qi", ["anonymize", "--data", "{w}/table.csv", "--qi", "nope", "--out", "{t}/a.csv"], "nope"),
    ("anon-missing", ["anonymize", "--data", "{w}/none.csv", "--qi", "age", "--out", "{t}/a.csv"], "none.csv"),
    (
        "rr-epsilon",
        [
            "randomized-response",
            "--data",
            "{w}/table.csv",
            "--column",
            "smoker",
            "--epsilon",
            "-1",
            "--out",
            "{t}/r.csv",
        ],
        "epsilon",
    ),  # fmt: skip
    (
        "rr-binary",
        ["randomized-response", "--data", "{w}/table.csv", "--column", "sex", "--out", "{t}/r.csv"],
        "expected binary values",
    ),  # fmt: skip
    ("rr-column", ["randomized-response", "--data", "{w}/table.csv", "--column", "nope", "--out", "{t}/r.csv"], "nope"),
    ("predict-bomb", ["predict", "{w}/model", "{w}/bomb.png"], "MAX_PIXELS"),
    ("predict-corrupt", ["predict", "{w}/model", "{w}/not-an-image.png"], "not-an-image.png"),
    ("predict-none", ["predict", "{w}/model", "{w}/none.png"], "none.png"),
    (
        "audit-eps",
        ["audit", "{w}/model", "--data", "digits", "--robust-eps", "-1", "--out", "{t}/rep"],
        "must lie in (0, 1]",
    ),
    ("audit-fail-on", ["audit", "{w}/model", "--data", "digits", "--fail-on", "x", "--out", "{t}/rep"], "fail-on"),
    ("audit-config", ["audit", "--config", "{w}/none.yaml", "--out", "{t}/rep"], "none.yaml"),
    (
        "audit-device",
        ["audit", "{w}/model", "--data", "digits", "--config", "{w}/cuda8.yaml", "--out", "{t}/rep"],
        "device 'cuda:8': this machine has",
    ),
    ("diff-missing", ["audit", "diff", "{w}/none.json", "{w}/none.json"], "none.json"),
    ("unknown-command", ["frobnicate"], "frobnicate"),
    ("unknown-option", ["train", "--colour", "red"], "--colour"),
]


def _out(args: list[str], out: str) -> list[str]:
    """``args`` writing to ``out`` instead."""
    if "--out" not in args:
        return [*args, "--out", out]
    at = args.index("--out")
    return [*args[:at], "--out", out, *args[at + 2 :]]


FOLDER_OUTPUTS = (
    "evaluate",
    "explain",
    "tcav",
    "attack",
    "robustness",
    "membership",
    "fairness",
    "cleverhans",
    "audit",
)
EXISTING_OUT = {  # without --force, an earlier output is never replaced
    **{command: _out(MODEL_COMMANDS[command], "{w}/out-dir") for command in FOLDER_OUTPUTS},
    "train": ["train", "--data", "digits", "--epochs", "1", "--out", "{w}/out-dir"],
    "predict": _out(MODEL_COMMANDS["predict"], "{w}/out-file.txt"),
    "anonymize": ["anonymize", "--data", "{w}/table.csv", "--qi", "age", "--out", "{w}/out-file.txt"],
    "randomized-response": [
        "randomized-response",
        "--data",
        "{w}/table.csv",
        "--column",
        "smoker",
        "--out",
        "{w}/out-file.txt",
    ],  # fmt: skip
}

MISPLACED_OUT = {  # even with --force: (arguments, what the line must say)
    "file-for-folder": (
        ["evaluate", "{w}/model", "--data", "digits", "--out", "{w}/out-file.txt", "--force"],
        "is a file; expected a folder",
    ),
    "train-into-its-data": (
        ["train", "--data", "{w}/concept", "--epochs", "1", "--out", "{w}/concept", "--force"],
        "input",
    ),
    "evaluate-into-its-model": (
        ["evaluate", "{w}/model", "--data", "digits", "--out", "{w}/model/config.json", "--force"],
        "input",
    ),
}


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _run(args: list[str], world: Path, scratch: Path, capsys, monkeypatch, extra: dict[str, str]) -> tuple[int, str]:
    argv = [a.format(w=world, t=scratch, **extra) for a in args]
    monkeypatch.chdir(scratch)
    monkeypatch.setattr(sys, "argv", ["trusttango", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    return stop.value.code, capsys.readouterr().err


def _check(args, expected: str, world: Path, tmp_path, capsys, monkeypatch, **extra: str) -> None:
    before = _snapshot(world)
    code, err = _run(args, world, tmp_path, capsys, monkeypatch, extra)
    lines = err.strip().splitlines()
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err[-2000:]
    assert expected in lines[0], lines[0]
    after = _snapshot(world)
    assert {k: after.get(k) for k in before} == before  # every earlier file kept, byte for byte


@pytest.mark.parametrize("bad", BAD_MODELS)
@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_a_bad_model_folder(command, bad, world, tmp_path, capsys, monkeypatch):
    _check(MODEL_COMMANDS[command], BAD_MODELS[bad], world, tmp_path, capsys, monkeypatch, m=str(world / bad))


@pytest.mark.parametrize("bad", BAD_DATA)
@pytest.mark.parametrize("command", DATA_COMMANDS)
def test_bad_data(command, bad, world, tmp_path, capsys, monkeypatch):
    data = str(world / bad) if bad.endswith(".npz") else bad
    _check(DATA_COMMANDS[command], BAD_DATA[bad], world, tmp_path, capsys, monkeypatch, d=data)


@pytest.mark.parametrize(("args", "expected"), [case[1:] for case in OPTIONS], ids=[case[0] for case in OPTIONS])
def test_a_bad_option(args, expected, world, tmp_path, capsys, monkeypatch):
    _check(args, expected, world, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("command", EXISTING_OUT)
def test_an_earlier_output_is_kept(command, world, tmp_path, capsys, monkeypatch):
    _check(EXISTING_OUT[command], "--force", world, tmp_path, capsys, monkeypatch, m=str(world / "model"))


@pytest.mark.parametrize("case", MISPLACED_OUT)
def test_an_output_in_the_wrong_place(case, world, tmp_path, capsys, monkeypatch):
    args, expected = MISPLACED_OUT[case]
    _check(args, expected, world, tmp_path, capsys, monkeypatch)
