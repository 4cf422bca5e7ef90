"""The one output policy (trusttango.outputs): an existing output is refused without --force,
an input is never an output, a path that cannot be written is refused before any work, and a
failed or interrupted run leaves the previous output byte-identical."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from trusttango.cli import main
from trusttango.errors import InputError
from trusttango.models import save_model
from trusttango.models.io import SavedModel
from trusttango.outputs import atomic_output, check_output


def _digest(path: Path) -> dict[str, str]:
    """sha256 of every file under ``path`` (or of the file itself)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, list[str]]:
    monkeypatch.setattr(sys, "argv", ["trusttango", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture
def model_dir(tmp_path, digits, digits_model) -> Path:
    return save_model(SavedModel(digits_model, digits_model.config, digits.class_names, {"data": "digits"}),
                      tmp_path / "model")  # fmt: skip


def test_check_output_refuses_in_one_line(tmp_path):
    full = tmp_path / "full"
    (full / "sub").mkdir(parents=True)
    (full / "sub" / "a.txt").write_text("a")
    afile = tmp_path / "f.csv"
    afile.write_text("x")
    cases = [
        (lambda: check_output(full, False), "pass --force"),
        (lambda: check_output(afile, False, kind="file"), "pass --force"),
        (lambda: check_output(afile, True), "is a file; expected a folder"),
        (lambda: check_output(full, True, kind="file"), "is a folder; expected a file"),
        (lambda: check_output(full, True, [full / "sub" / "a.txt"]), "holds) the input"),  # replacing deletes it
        (lambda: check_output(full / "sub" / "out", False, [full]), "holds) the input"),  # inside an input folder
        (lambda: check_output(afile / "out", False), "is a file, not a folder"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
            call()
        assert "\n" not in str(err.value)
    link = tmp_path / "link.csv"
    link.hardlink_to(afile)  # the same inode under another name
    with pytest.raises(InputError, match="input"):
        check_output(link, True, [afile], kind="file")
    assert check_output(full, True) == full and check_output(tmp_path / "new" / "x", False) == tmp_path / "new" / "x"


@pytest.mark.parametrize("kind", ["dir", "file"])
def test_a_failed_write_leaves_the_previous_output_as_it_was(tmp_path, kind):
    out = tmp_path / ("out" if kind == "dir" else "out.csv")
    if kind == "dir":
        out.mkdir()
        (out / "old.txt").write_text("old")
    else:
        out.write_text("old")
    before = _digest(out)
    with pytest.raises(RuntimeError), atomic_output(out, kind) as staging:
        (staging / "new.txt" if kind == "dir" else staging).write_text("half")
        raise RuntimeError("interrupted")
    assert _digest(out) == before and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    with atomic_output(out, kind) as staging:
        (staging / "new.txt" if kind == "dir" else staging).write_text("new")
    written = sorted(p.name for p in out.iterdir()) if kind == "dir" else [out.read_text()]
    assert written == (["new.txt"] if kind == "dir" else ["new"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temporary left beside it


def test_commands_refuse_to_overwrite_and_keep_what_was_written(model_dir, tmp_path, monkeypatch, capsys):
    """train over an existing model, evaluate (attack, robustness, membership, fairness, cleverhans)
    into the model's own folder, predict over one of its images, anonymize or randomise over the
    input table, --force or not: exit 2, one line, the guarded files byte-identical."""
    from PIL import Image

    image = tmp_path / "img.png"
    Image.new("L", (8, 8), 128).save(image)
    table = tmp_path / "people.csv"
    table.write_text("age,sex\n30,F\n31,M\n32,F\n33,M\n")
    guarded = {p: _digest(p) for p in (model_dir, image, table)}
    cases = [
        (["train", "--data", "digits", "--epochs", "1", "--out", str(model_dir)], "pass --force"),
        (["evaluate", str(model_dir), "--data", "digits", "--out", str(model_dir)], "the input"),
        (["predict", str(model_dir), str(image), "--out", str(image), "--force"], "the input"),
        (["anonymize", "--data", str(table), "--k", "2", "--qi", "age", "--out", str(table), "--force"], "the input"),
        (["randomized-response", "--data", str(table), "--column", "sex", "--out", str(table), "--force"], "the input"),
        *[
            ([command, str(model_dir), "--data", "digits", "--out", str(model_dir), "--force", *extra], "the input")
            for command, extra in (
                ("attack", []),
                ("robustness", []),
                ("membership", []),
                ("fairness", []),
                ("cleverhans", ["--region", "0,0,2,2"]),
            )
        ],
    ]
    for args, message in cases:
        code, lines = _cli(args, monkeypatch, capsys)
        assert code == 2 and len(lines) == 1 and message in lines[0], (args, lines)
    assert {p: _digest(p) for p in guarded} == guarded


def test_force_replaces_only_once_the_new_output_is_complete(model_dir, tmp_path, monkeypatch, capsys):
    """evaluate --force over an earlier evaluation replaces it; a run that fails midway (an image
    the model cannot read) leaves the earlier predictions byte-identical."""
    out = tmp_path / "eval"
    assert _cli(["evaluate", str(model_dir), "--data", "digits", "--out", str(out)], monkeypatch, capsys)[0] == 0
    (out / "stale.txt").write_text("from an older run")
    assert _cli(["evaluate", str(model_dir), "--data", "digits", "--out", str(out), "--force"], monkeypatch,
                capsys)[0] == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["confusion.png", "metrics.json"]
    predictions = tmp_path / "p.csv"
    predictions.write_text("earlier predictions\n")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    code, lines = _cli(["predict", str(model_dir), str(broken), "--out", str(predictions), "--force"], monkeypatch,
                       capsys)  # fmt: skip
    assert code == 2 and len(lines) == 1, lines
    assert predictions.read_text() == "earlier predictions\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
