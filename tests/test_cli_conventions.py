"""One convention for every command's arguments, checked by walking the registered commands:
a model is the first positional argument, data is ``--data``, outputs are ``--out``; a missing
model directory is one line and exit status 2."""

from __future__ import annotations

import sys

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
