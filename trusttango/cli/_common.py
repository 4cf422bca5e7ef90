"""What every CLI command shares: loading a model with its data check, comma lists, the
console, and the exit convention (bad input: one line on stderr, exit status 2).

Argument convention, checked by ``tests/test_cli_conventions.py`` over every command: a command
that reads a model takes it as its first positional argument; a command that reads data takes
it as ``--data``; a command that writes takes ``--out``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from trusttango.errors import require

console = Console(stderr=True, soft_wrap=True)  # paths stay on one line, whatever the width

MODEL_ARG_HELP = "Model directory (a trusttango model, a zoom-in model, or an automl output folder)."
DATA_HELP = "Built-in name, image folder, .npz or IDX file."
FORCE_OPTION = typer.Option(False, "--force", help="Replace an existing output (only once the new one is complete).")
# trusttango.robust.ATTACKS, written out so that --help needs no torch import (a test checks they agree)
ATTACK_HELP = (
    "fgsm | bim | pgd | mifgsm | cw | deepfool | minnorm | square | apgd-ce | apgd-t | fab | fab-t | autoattack"
)


def model_argument() -> typer.models.ArgumentInfo:
    """The first positional argument of every command that reads a model."""
    return typer.Argument(..., help=MODEL_ARG_HELP)


def data_option(default: str | None = None, help: str = DATA_HELP) -> typer.models.OptionInfo:
    """The ``--data`` option of every command that reads a dataset (default None on commands
    that read a model: the data the model records, see :func:`recorded_data`)."""
    if default is None:
        help += " Default: the data the model was trained on."
    return typer.Option(default, "--data", help=help)


def recorded_data(saved, data: str | None, model: Path) -> str:
    """``data``, or (not given) the dataset the saved model records it was trained on."""
    if data is not None:
        return data
    recorded = saved.meta.get("data")
    require(bool(recorded), f"{model}: the model records no dataset; give --data")
    console.print(f"--data not given: using {recorded}, the data the model was trained on")
    return str(recorded)


def items(text: str, option: str = "") -> list[str]:
    """The non-empty, stripped parts of a comma-separated list (``"a, b,"`` -> ``["a", "b"]``)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    require(bool(parts) or not option, f"{option}: expected a comma-separated list, got {text!r}")
    return parts


def floats(text: str, option: str) -> list[float]:
    """A comma-separated list of numbers; :class:`InputError` naming ``option`` otherwise."""
    try:
        return [float(part) for part in items(text, option)]
    except ValueError:
        raise_input(f"{option}: expected comma-separated numbers, got {text!r}")


def raise_input(message: str) -> None:
    from trusttango.errors import InputError

    raise InputError(message)


def model_dir(path: Path) -> Path:
    """``path`` itself, or the ``best_model/`` inside an ``automl`` output folder."""
    require(path.exists(), f"{path}: model directory not found")
    if not (path / "config.json").exists() and (path / "best_model" / "config.json").exists():
        console.print(f"using the search's best model, {path / 'best_model'}")
        return path / "best_model"
    return path


def check_compatible(saved, data) -> None:
    """Refuse data whose input shape or class count the model was not built for."""
    from trusttango.models import check_compatible as check

    check(saved.config, data)


@dataclass
class Loaded:
    """A saved model and one split of the data it is checked against."""

    saved: object
    data: object

    @property
    def model(self):
        return self.saved.model


def load_model_and_data(model: Path, data: str, split: str = "test", seed: int = 0, **load_options) -> Loaded:
    """The model directory (see :func:`model_dir`) and the ``split`` of ``data``, checked compatible."""
    from trusttango.data import load_data
    from trusttango.models import load_model

    require(split in ("train", "val", "test"), f"--split: expected train, val or test, got {split!r}")
    saved = load_model(model_dir(model))
    ds = getattr(load_data(recorded_data(saved, data, model), seed=seed, **load_options), split)
    check_compatible(saved, ds)
    return Loaded(saved, ds)


def first(ds, n: int, option: str = "--n"):
    """The first ``n`` examples of ``ds`` as ``(x, y)`` (``n >= 1``)."""
    require(n >= 1, f"{option}: expected >= 1, got {n}")
    return ds.x[:n], ds.y[:n]
