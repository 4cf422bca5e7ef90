"""CLI: the options that bring the user's own model (``audit`` takes them too), and
``trusttango import-model``, which writes it as a model directory that every command reads
(see :mod:`trusttango.models.imported`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path

import typer

from trusttango.cli._common import DATA_HELP, FORCE_OPTION, console, floats
from trusttango.errors import require

BYO = "Your own model"  # the help panel of the options that bring one


def _byo(help: str, default: object = None) -> typer.models.OptionInfo:
    return typer.Option(default, help=help, rich_help_panel=BYO)


ARCH = _byo("A torchvision architecture (e.g. resnet18), with --weights.")
MODEL_CODE = _byo("FILE.py:FUNCTION or MODULE:FUNCTION returning your nn.Module; the file is imported and RUN.")
ONNX = _byo("An ONNX model, converted to PyTorch and checked against onnxruntime.")
WEIGHTS = _byo("State dict: .safetensors, or .pt/.pth (weights only, never unpickled).")
IN_CHANNELS = _byo("Rebuild --arch's first conv for this many input channels.")
NUM_CLASSES = _byo("Outputs of --arch (default: the data's classes).")
VALUE_RANGE = _byo("LOW,HIGH: the pixel range the model expects (e.g. 0,255).", "0,1")
MEAN = _byo("Per-channel mean the model normalises with (e.g. 0.2860).")
STD = _byo("Per-channel std the model normalises with.")
MEMBERS = _byo("train: your model was trained on --data's train split (the membership test needs it).")
CLASS_NAMES = _byo("Text file, one class name per line (default: the data's).")


def model_source(arch, code, onnx, weights, in_channels, num_classes, value_range, mean, std, class_names) -> object:
    """The user's model from the flags as typed (None when none of --arch, --model-code, --onnx
    is given, and nothing that describes one either)."""
    from trusttango.models.external import ModelSource

    if not (arch or code or onnx):
        given = any(v is not None for v in (weights, in_channels, num_classes, mean, std, class_names))
        why = "--weights, --mean, --std ...: they describe your model; give --arch, --model-code or --onnx"
        require(not given, why)
        return None
    low_high = floats(value_range, "--value-range")
    require(len(low_high) == 2, f"--value-range: expected LOW,HIGH, got {value_range!r}")
    mean, std = (floats(text, option) if text else None for text, option in ((mean, "--mean"), (std, "--std")))
    return ModelSource(arch, code, onnx, weights, num_classes, in_channels, tuple(low_high), mean, std, class_names)


OPTIONS: dict[str, tuple[type, typer.models.OptionInfo]] = {
    "arch": (str, ARCH),
    "model_code": (str, MODEL_CODE),
    "onnx": (Path, ONNX),
    "weights": (Path, WEIGHTS),
    "in_channels": (int, IN_CHANNELS),
    "num_classes": (int, NUM_CLASSES),
    "value_range": (str, VALUE_RANGE),
    "mean": (str, MEAN),
    "std": (str, STD),
    "class_names": (Path, CLASS_NAMES),
}


def takes_own_model(command: Callable[..., None]) -> Callable[..., None]:
    """``command`` with the options of :data:`OPTIONS` added to its signature (its help panel
    "Your own model"); it is called with them as one ``source`` argument: the
    :class:`~trusttango.models.external.ModelSource` they describe, or None."""
    signature = inspect.signature(command, eval_str=True)
    own = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
           for name, (kind, option) in OPTIONS.items()]  # fmt: skip

    @functools.wraps(command)
    def with_source(**flags: object) -> None:
        values = [flags.pop(name) for name in OPTIONS]
        return command(**flags, source=model_source(*values))

    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "source"]
    with_source.__signature__ = signature.replace(parameters=[*kept, *own])
    return with_source


@takes_own_model
def import_model(
    data: str = typer.Option(..., "--data", help=DATA_HELP + " The model is checked on its test split."),
    out: Path = typer.Option(..., help="Model directory to write."),
    force: bool = FORCE_OPTION,
    seed: int = typer.Option(0, help="Seed of the split (user data)."),
    members: str = MEMBERS,
    source: object = None,
) -> None:
    """Write your own model (--arch + --weights, --model-code, or --onnx) as a model directory
    that every command reads (evaluate, attack, robustness, explain, ...).

    Weights and ONNX files are copied in; a --model-code model runs your code only with TRUSTTANGO_TRUST_CODE=1.
    """
    from trusttango.data import load_data
    from trusttango.models.imported import save_imported
    from trusttango.outputs import atomic_output, check_output

    require(source is not None, "give your model: --arch (+ --weights), --model-code or --onnx")
    require(members in (None, "train", "unknown"), f"--members: expected train or unknown, got {members!r}")
    files = [source.onnx, source.weights, source.class_names]
    check_output(out, force, [data, *(path for path in files if path is not None)])
    test = load_data(data, seed=seed).test
    with atomic_output(out) as staging:
        saved = save_imported(source, test, staging, meta={"data": data, "members": members or "unknown"})
    console.print(f"{saved.config.source['kind']} model ({saved.config.source['model']}) written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``import-model`` to the CLI."""
    app.command(name="import-model")(import_model)
