"""CLI: ``trusttango audit [MODEL]``: the whole trust audit into one report folder."""

from __future__ import annotations

from pathlib import Path

import typer

from trusttango.cli._common import MODEL_ARG_HELP, console
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


def audit(
    model: Path = typer.Argument(None, help=MODEL_ARG_HELP + " Default: search for one under --budget."),
    data: str = typer.Option(None, "--data", help="Built-in dataset or path (default fashion-mnist)."),
    budget: float = typer.Option(None, help="Seconds for the whole audit (default 600)."),
    out: Path = typer.Option(None, help="Report folder (default report/)."),
    config: Path = typer.Option(None, help="YAML file with any AuditConfig option; flags override it."),
    sampler: str = typer.Option(None, help="Search sampler: random | tpe | cmaes | evolution."),
    seed: int = typer.Option(None),
    robust_eps: float = typer.Option(
        None, help="Budget of the robustness verdict (default: the data's published one, named in the report)."
    ),
    robust_norm: str = typer.Option(None, help="Norm of the robustness verdict: linf (default) | l2."),
    robust_preset: str = typer.Option(
        None, help="AutoAttack preset of the verdict: standard (default, Croce & Hein 2020) | fast (weaker, cheaper)."
    ),
    force: bool = typer.Option(False, "--force", help="Write into an existing, non-empty report folder."),
    arch: str = ARCH,
    model_code: str = MODEL_CODE,
    onnx: Path = ONNX,
    weights: Path = WEIGHTS,
    in_channels: int = IN_CHANNELS,
    num_classes: int = NUM_CLASSES,
    value_range: str = VALUE_RANGE,
    mean: str = MEAN,
    std: str = STD,
    class_names: Path = CLASS_NAMES,
    members: str = MEMBERS,
) -> None:
    """Search (or load) a model, then explain, attack, detect, probe privacy and fairness; write the report.

    Bring your own model with --arch + --weights, --model-code (+ --weights) or --onnx.
    """
    from trusttango.cli._common import model_dir
    from trusttango.report.audit import AuditConfig, run_audit

    source = None
    if arch or model_code or onnx:
        norm = (value_range, mean, std)
        source = _model_source(arch, model_code, onnx, weights, in_channels, num_classes, norm, class_names)
    else:
        given = any(v is not None for v in (weights, in_channels, num_classes, mean, std, class_names))
        require(
            not given, "--weights, --mean, --std ...: they describe your model; give --arch, --model-code or --onnx"
        )
    if model is not None:
        model = model_dir(model)
        if data is None and config is None:  # the data the model was trained on
            from trusttango.cli._common import recorded_data
            from trusttango.models import load_model

            data = recorded_data(load_model(model), None, model)
    flags = {"data": data, "budget": budget, "out": out, "model": model, "sampler": sampler, "seed": seed}
    flags.update(robust_eps=robust_eps, robust_norm=robust_norm, robust_preset=robust_preset)
    flags.update(force=force or None, model_source=source, members=members)
    if config is not None:
        cfg = AuditConfig.from_yaml(config, **flags)
    else:
        cfg = AuditConfig(**{k: v for k, v in flags.items() if v is not None})
    page = run_audit(cfg)
    console.print(f"report written to {page}")


def _model_source(arch, code, onnx, weights, in_channels, num_classes, norm, class_names) -> object:
    """The user's model from the flags; ``norm`` is the (value range, mean, std) as typed."""
    from trusttango.cli._common import floats
    from trusttango.models.external import ModelSource

    value_range, mean, std = norm
    low_high = floats(value_range, "--value-range")
    require(len(low_high) == 2, f"--value-range: expected LOW,HIGH, got {value_range!r}")
    mean, std = (floats(text, option) if text else None for text, option in ((mean, "--mean"), (std, "--std")))
    return ModelSource(arch, code, onnx, weights, num_classes, in_channels, tuple(low_high), mean, std, class_names)


def register(app: typer.Typer) -> None:
    """Add ``audit`` to the CLI."""
    app.command()(audit)
