"""One convention for every command's arguments, checked by walking the registered commands:
a model is the first positional argument, data is ``--data``, outputs are ``--out``; a missing
model directory is one line and exit status 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
import typer

from trusttango.cli import build_app, main

OUTPUT_NAMES = {"output", "out_dir", "output_dir", "outdir", "out_path", "output_path"}
DATA_NAMES = {"data", "dataset", "data_path"}


def _commands(group: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, click.Command]]:
    if isinstance(group, click.Group):
        found = []
        for name, command in sorted(group.commands.items()):
            found += _commands(command, (*prefix, name))
        return found
    return [(" ".join(prefix), group)]


COMMANDS = _commands(typer.main.get_command(build_app()))
MODEL_COMMANDS = [(name, c) for name, c in COMMANDS if any(p.name == "model" for p in c.params)]


def test_the_walk_finds_every_pillar() -> None:
    names = {name.split()[0] for name, _ in COMMANDS}
    assert {"train", "evaluate", "predict", "explain", "attack", "detect", "audit", "fairness", "membership"} <= names
    assert len(MODEL_COMMANDS) >= 8, [name for name, _ in MODEL_COMMANDS]


@pytest.mark.parametrize("name,command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_argument_convention(name: str, command: click.Command) -> None:
    arguments = [p for p in command.params if isinstance(p, click.Argument)]
    for param in command.params:
        if param.name == "model":
            assert arguments and arguments[0] is param, f"{name}: MODEL must be the first positional argument"
        if param.name in DATA_NAMES:
            assert isinstance(param, click.Option) and "--data" in param.opts, f"{name}: data must be --data"
        if param.name == "out":
            assert isinstance(param, click.Option) and "--out" in param.opts, f"{name}: output must be --out"
        assert param.name not in OUTPUT_NAMES, f"{name}: {param.name} should be --out"
    assert command.help, f"{name}: no help text"


@pytest.mark.parametrize("name,command", MODEL_COMMANDS, ids=[name for name, _ in MODEL_COMMANDS])
def test_missing_model_is_one_line_and_status_2(
    name: str, command: click.Command, tmp_path, monkeypatch, capsys
) -> None:
    missing = tmp_path / "no-such-model"
    monkeypatch.setattr(sys, "argv", ["trusttango", *name.split(), str(missing), *_required_options(command)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert "Traceback" not in err and str(missing.name) in err, err
    assert not missing.exists()


def _required_options(command: click.Command) -> list[str]:
    """Placeholder values for the required options other than the model (so the model is what fails)."""
    values = []
    for param in command.params:
        if isinstance(param, click.Option) and param.required:
            values += [param.opts[0], "x"]
        elif isinstance(param, click.Argument) and param.required and param.name != "model":
            values.append("x")
    return values


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trusttango.cli", *args], capture_output=True, text=True, **kwargs)


def test_old_positional_data_form_gets_a_one_line_hint(tmp_path) -> None:
    old = _cli("attack", str(tmp_path / "m"), "digits")
    assert old.returncode == 2 and old.stderr.strip().count("\n") == 0, old.stderr
    assert "trusttango attack MODEL --data digits" in old.stderr
    unknown = _cli("evaluate", str(tmp_path / "m"), "--bogus", "1")
    assert unknown.returncode == 2 and unknown.stderr.strip().count("\n") == 0 and "--bogus" in unknown.stderr
    typo = _cli("atack")
    assert typo.returncode == 2 and typo.stderr.count("Did you mean 'attack'") == 1


def test_ctrl_c_exits_130_with_one_line_and_writes_nothing(tmp_path) -> None:
    """SIGINT during training: exit status 130, one line, and no model directory (it is written
    only when training finished)."""
    out = tmp_path / "m"
    args = [sys.executable, "-m", "trusttango.cli", "train", "--data", "digits", "--epochs", "500", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not _training(proc):
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout[-500:], stderr[-1500:])
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr[-1500:]
    assert not out.exists()


def _training(proc: subprocess.Popen) -> bool:
    """Whether the child is past its imports and in the training loop: more than 8 s of CPU time
    (Linux /proc; importing torch and trusttango takes about 4)."""
    utime, stime = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK") > 8


def test_model_commands_default_to_the_data_the_model_was_trained_on(tmp_path) -> None:
    from typer.testing import CliRunner

    model = tmp_path / "m"
    args = ["train", "--data", "digits", "--epochs", "1", "--depth", "2", "--out", str(model)]
    assert CliRunner().invoke(build_app(), args).exit_code == 0
    run = _cli("evaluate", str(model), "--out", str(tmp_path / "e"))
    assert run.returncode == 0 and "using digits, the data the model was trained on" in run.stderr, run.stderr
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert sum(metrics["support"]) == 359  # digits' test split (a fashion-mnist default would not even fit)


def test_help_fits_80_columns_without_cutting_anything() -> None:
    """Every command's --help on an 80-column terminal: no option name, metavar or default is cut (…)."""
    from typer.testing import CliRunner

    app = build_app()
    cut = {}
    for name, _ in COMMANDS:
        shown = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "80"}, terminal_width=80)
        assert shown.exit_code == 0, (name, shown.output)
        lines = [line for line in shown.output.splitlines() if "…" in line]
        if lines:
            cut[name] = lines
    assert not cut, cut


DETERMINISTIC = {  # commands that draw nothing at random, and why
    "datasets": "lists the built-ins",
    "predict": "one forward pass",
    "anonymize": "Mondrian splits at medians and hierarchy nodes",
    "federated-node": "its seeds come from the server's run config",
    "audit diff": "compares two audit.json files",
}


@pytest.mark.parametrize("name,command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_seed_wherever_anything_is_random(name: str, command: click.Command) -> None:
    if name not in DETERMINISTIC:
        assert any(param.name == "seed" for param in command.params), f"{name}: draws at random but has no --seed"


@pytest.mark.parametrize("name,command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_output_is_guarded(name: str, command: click.Command) -> None:
    """A command that writes --out refuses to replace it without --force (trusttango.outputs)."""
    params = {p.name for p in command.params}
    if "out" in params:
        assert "force" in params, f"{name}: writes --out but has no --force"
