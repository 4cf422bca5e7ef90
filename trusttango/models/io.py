"""Model files: a directory with ``model.safetensors`` and ``config.json``.

``config.json`` holds the :class:`~trusttango.models.unified.ModelConfig`, class names,
the seed, library versions, metrics and any extra metadata (e.g. a DP guarantee).
Loading never unpickles anything: weights come from safetensors, the rest is JSON.

The ``format`` field of ``config.json`` says how to read the directory: :data:`FORMAT` is the
unified model; other model kinds (e.g. the zoom-in classifier, which holds two models and a
fusion head) declare a loader for their format as a package entry point in the group
:data:`FORMAT_GROUP` (``name = "module:loader"``, as trusttango's own ``pyproject.toml``
does), or call :func:`register_format` at run time, so :func:`load_model` and every command
that uses it read them too. The loader's module is imported only when such a directory is read.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.unified import ModelConfig, UnifiedModel, build_model
from trusttango.schema import read

FORMAT = "trusttango-model/1"
WEIGHTS, CONFIG = "model.safetensors", "config.json"


@dataclass
class SavedModel:
    """A model with what it needs to be used: class names and metadata."""

    model: UnifiedModel
    config: ModelConfig
    class_names: list[str]
    meta: dict = field(default_factory=dict)


def versions() -> dict[str, str]:
    """Versions of Python and the main libraries, recorded with every run (read from the
    installed packages' metadata: importing torchvision would cost seconds)."""
    from importlib.metadata import version

    import trusttango

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "trusttango": trusttango.__version__,
    }


def _write_atomic(path: Path, write) -> None:
    """Write via a temporary file in the same folder, then rename: no half-written files."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``tensors`` detached, on the CPU and contiguous: what safetensors' ``save_file`` writes."""
    return {k: v.detach().cpu().contiguous() for k, v in tensors.items()}


def save_model(saved: SavedModel, directory: str | Path) -> Path:
    """Write ``saved`` to ``directory`` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = cpu_tensors(saved.model.state_dict())
    document = {
        "format": FORMAT,
        "model": saved.config.to_dict(),
        "class_names": list(saved.class_names),
        "versions": versions(),
        **saved.meta,
    }
    _write_atomic(directory / WEIGHTS, lambda tmp: save_file(state, tmp))
    _write_atomic(directory / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(document, indent=2, default=str)))
    return directory


class ModelDocument(BaseModel):
    """The schema of a unified model's ``config.json``; other fields are metadata (seed, versions, metrics)."""

    model_config = ConfigDict(strict=True, extra="allow")

    format: str
    model: ModelConfig
    class_names: list[str]

    @model_validator(mode="after")
    def _one_name_per_output(self) -> ModelDocument:
        count, outputs = len(self.class_names), self.model.num_classes
        require(count == outputs, f"class_names: {count} names for a model of {outputs} outputs")
        return self


Loader = Callable[[Path, "str | torch.device"], SavedModel]
LOADERS: dict[str, Loader] = {}  # registered at run time (register_format)
FORMAT_GROUP = "trusttango.model_formats"  # entry-point group of installed formats


def _installed_formats() -> dict[str, object]:
    """Format name -> entry point, for every installed package that declares one."""
    from importlib.metadata import entry_points

    return {point.name: point for point in entry_points(group=FORMAT_GROUP)}


def _loader(name: str) -> Loader:
    """The loader of format ``name``: registered at run time, else its entry point (loaded now)."""
    if name in LOADERS:
        return LOADERS[name]
    return _installed_formats()[name].load()


def register_format(name: str, loader: Loader) -> None:
    """Let :func:`load_model` read directories whose ``config.json`` has ``"format": name``:
    ``loader(directory, device)`` returns their :class:`SavedModel` (model in eval mode)."""
    require(name != FORMAT, f"format {FORMAT!r} is the unified model's own")
    LOADERS[name] = loader


def read_config(directory: str | Path, formats: tuple[str, ...] | None = None) -> dict:
    """The parsed ``config.json`` of a model directory; its ``format`` must be one of ``formats``
    (default: :data:`FORMAT` and every registered one)."""
    path = Path(directory) / CONFIG
    require(Path(directory).is_dir(), f"{directory}: model directory not found")
    require(path.exists(), f"{path}: missing (not a trusttango model directory)")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: corrupt JSON ({err})") from None
    formats = formats or (FORMAT, *LOADERS, *_installed_formats())
    require(
        isinstance(document, dict) and document.get("format") in formats, f"{path}: not a {' or '.join(formats)} file"
    )
    return document


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Rebuild the model in ``directory`` and load its weights (eval mode); another format
    (an installed entry point or :func:`register_format`) is read by its own loader."""
    fmt = read_config(directory)["format"]
    if fmt != FORMAT:
        return _loader(fmt)(Path(directory), device)
    document = read(ModelDocument, Path(directory) / CONFIG)
    cfg = document.model
    model = build_model(cfg, seed=None)
    weights = Path(directory) / WEIGHTS
    require(weights.exists(), f"{weights}: missing")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as err:
        raise InputError(f"{weights}: corrupt weights file ({err})") from None
    load_state(model, state, weights)
    return SavedModel(model.to(device).eval(), cfg, document.class_names, dict(document.model_extra or {}))


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: Path, against: str = "config.json") -> None:
    """Load ``state`` into ``model`` strictly; an :class:`InputError` naming the first tensor that
    is missing, unexpected, of the wrong shape (``against``: what defined the model) or holds a
    NaN or an infinity (a diverged training run: its outputs would mean nothing)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and expected[k].shape != state[k].shape]
    where = f"{source}: weights do not match {against}"
    if missing:
        raise InputError(f"{where}: tensor {missing[0]!r} missing ({len(missing)} in all)")
    if unexpected:
        raise InputError(f"{where}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)")
    if wrong:
        key = wrong[0]
        raise InputError(
            f"{where}: tensor {key!r} has shape {tuple(state[key].shape)}, expected {tuple(expected[key].shape)}"
        )
    broken = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        raise InputError(f"{source}: tensor {broken[0]!r} holds NaN or infinite values ({len(broken)} in all)")
    model.load_state_dict(state)
