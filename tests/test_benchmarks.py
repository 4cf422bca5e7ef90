"""One harness for the benchmarks: every script is a module of the ``benchmarks`` package with a
parser built by :func:`benchmarks.harness.make_parser` (flags, never environment variables); an
unknown flag or part exits 2 and names the known ones; ``--help`` works without running anything."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.harness import parse

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("bench_*.py"))


def test_every_script_is_a_module_without_path_edits():
    assert len(SCRIPTS) >= 12
    for name in SCRIPTS:
        text = (ROOT / "benchmarks" / f"{name}.py").read_text()
        assert "sys.path" not in text and 'os.environ.get("BENCH' not in text or name in ENV_PENDING, name
        built = importlib.import_module(f"benchmarks.{name}").parser()
        assert hasattr(built, "known_parts"), name  # built by benchmarks.harness.make_parser


ENV_PENDING = {"bench_automl", "bench_detect", "bench_federated", "bench_privacy", "bench_robust"}


@pytest.mark.parametrize("name", SCRIPTS)
def test_unknown_flags_and_parts_exit_2_naming_the_known_ones(name, capsys):
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as stop:
        parse(module.parser(), ["--no-such-flag"])
    assert stop.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
    known = module.parser().known_parts
    if known:
        with pytest.raises(SystemExit) as stop:
            parse(module.parser(), ["no-such-part"])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and f"known: {', '.join(known)}" in err, err
        assert parse(module.parser(), [known[-1]]).parts == [known[-1]]


def test_help_runs_as_a_module_from_the_repository_root():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_membership", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0 and "--reference-models" in proc.stdout and "LiRA" in proc.stdout, proc.stderr


def test_a_table_replaces_its_previous_run_and_keeps_the_others(tmp_path, monkeypatch):
    from benchmarks import harness

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nintro\n\n## A\nold A\n\n## B\nold B, kept\n")
    monkeypatch.setattr(harness, "RESULTS", results)
    harness.write_table("A", ["x"], [[1.23456]], "notes of the new A")
    harness.write_table("C", ["y"], [["z"]])
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nintro\n\n## A\n") and "old A" not in text
    assert "| 1.235 |" in text and "notes of the new A" in text and "## B\nold B, kept\n" in text
    assert text.index("## A") < text.index("## B") < text.index("## C") and text.count("## ") == 3
    assert "load average" in text.split("## C")[1].splitlines()[1]


def test_autoattack_throughput_rows_on_a_tiny_model():
    """bench_autoattack's throughput part end to end on a linear model (the device the model and
    images live on; here the CPU): one row per way of running ours, each with both rates, the
    median ratio and its range over the repeats, and both robust accuracies."""
    import torch
    from torch import nn

    from benchmarks.bench_autoattack import ROWS, throughput

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).eval()
    x = torch.rand(6, 1, 28, 28)
    rows = throughput(model, x, model(x).argmax(1), "tiny", 0.0)
    assert [row[:2] for row in rows] == [["tiny", name] for name in ROWS]
    for _, _, ours, theirs, ratio, spread, _, robust, robust_theirs in rows:
        assert ours > 0 and theirs > 0 and ratio > 0 and spread.endswith("(1)")
        assert 0 <= robust <= 1 and 0 <= robust_theirs <= 1
    assert rows[1][6] in ("met", "not met") and rows[0][6] == ""
