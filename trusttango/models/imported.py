"""The user's own model as a model directory, so that every command that reads a model
(``evaluate``, ``attack``, ``robustness``, ``explain``, ``detect``, ``membership``, ``fairness``,
``predict``, ``audit``) reads it as it reads a trusttango model.

:func:`save_imported` checks a :class:`~trusttango.models.external.ModelSource` on the data (as
the audit does) and writes a directory that holds everything needed to rebuild it: ``config.json``
(``format`` :data:`FORMAT`, the :class:`~trusttango.models.external.ModelSpec`, how to build the
network) and the weights, copied in (``model.safetensors``, or ``model.onnx`` with any external
data of the user's file inside it), so a later change to the user's files does not change the
model the directory names.

Reading it never unpickles anything. A torchvision architecture or an ONNX file is rebuilt from
the directory alone. A network built by the user's code (``--model-code``) is rebuilt by
**running that code again**: :func:`load_imported` refuses it unless the environment variable
:data:`TRUST_CODE` is ``1``, so reading a directory someone sent runs no code of theirs unasked.
Declared as the loader of :data:`FORMAT` in ``pyproject.toml`` (entry-point group
``trusttango.model_formats``), so :func:`trusttango.models.load_model` calls it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, model_validator
from safetensors.torch import save_file

from trusttango.errors import require
from trusttango.models.external import ModelSource, ModelSpec, check_output
from trusttango.models.io import CONFIG, WEIGHTS, SavedModel, cpu_tensors, read_config, versions
from trusttango.models.onnx import copy_onnx
from trusttango.schema import read

FORMAT = "trusttango-imported/1"
ONNX_FILE = "model.onnx"
TRUST_CODE = "TRUSTTANGO_TRUST_CODE"


class Build(BaseModel):
    """How the network is rebuilt: a torchvision ``arch`` (first conv for ``in_channels``), the
    user's ``code`` (``FILE.py:FUNCTION`` with an absolute path, or ``MODULE:FUNCTION``), or
    ``onnx`` (the file in the directory)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    arch: str | None = None
    in_channels: int | None = None
    code: str | None = None
    onnx: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Build:
        if sum(way is not None for way in (self.arch, self.code, self.onnx)) != 1:
            raise ValueError("give exactly one of arch, code, onnx")
        if self.onnx not in (None, ONNX_FILE):
            raise ValueError(f"onnx: expected {ONNX_FILE!r}, the file inside the directory")
        return self


class ImportedDocument(BaseModel):
    """The schema of an imported model's ``config.json``; other fields are metadata (data, versions)."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: str
    spec: ModelSpec
    build: Build


def save_imported(source: ModelSource, data: object, directory: str | Path, meta: dict | None = None) -> SavedModel:
    """Load ``source`` checked on ``data`` (see :meth:`ModelSource.load`) and write it to
    ``directory`` (created; its files written last, ``config.json`` after the weights);
    returns the loaded model. ``meta`` (e.g. ``{"data": name}``) is kept in ``config.json``."""
    require(source.module is None, "a model given from Python cannot be saved: give --arch, --model-code or --onnx")
    saved = source.load(data)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if source.onnx is not None:
        copy_onnx(Path(source.onnx), directory / ONNX_FILE)
        build = Build(onnx=ONNX_FILE)
    else:
        save_file(cpu_tensors(saved.model.net.state_dict()), directory / WEIGHTS)
        build = Build(arch=source.arch, in_channels=source.in_channels, code=_absolute(source.code))
    document = {"format": FORMAT, "spec": saved.config.model_dump(), "build": build.model_dump(exclude_none=True)}
    document.update(versions=versions(), **(meta or {}))
    (directory / CONFIG).write_text(json.dumps(document, indent=2, default=str))
    return saved


def _absolute(code: str | None) -> str | None:
    """``FILE.py:FUNCTION`` with the file's absolute path (the directory is read from anywhere)."""
    if code is None or not code.rpartition(":")[0].endswith(".py"):
        return code
    where, _, attr = code.rpartition(":")
    return f"{Path(where).resolve()}:{attr}"


def code_file(directory: str | Path) -> Path | None:
    """The user's file that builds the model of an imported ``directory`` (None: no such file,
    or ``directory`` is no imported model), so provenance can hash it with the directory's files."""
    try:
        document = json.loads((Path(directory) / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    code = (document.get("build") or {}).get("code") if document.get("format") == FORMAT else None
    where = str(code).rpartition(":")[0]
    return Path(where) if where.endswith(".py") else None


def load_imported(directory: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """Rebuild the model :func:`save_imported` wrote (pixel space, eval mode, on ``device``),
    its output checked on zeros of its input shape."""
    directory = Path(directory)
    read_config(directory, (FORMAT,))
    document = read(ImportedDocument, directory / CONFIG)
    spec, build = document.spec, document.build
    if build.code is not None:
        require(os.environ.get(TRUST_CODE) == "1",
                f"{directory}: this model is built by running {build.code} (code outside the directory); "
                f"set {TRUST_CODE}=1 to run it")  # fmt: skip
    if build.onnx is not None:
        source = ModelSource(onnx=directory / build.onnx)
    else:
        weights = directory / WEIGHTS  # read_weights names it when it is missing
        source = ModelSource(arch=build.arch, code=build.code, in_channels=build.in_channels, weights=weights)
    saved = source.build(spec)
    saved.model.to(device)
    check_output(saved.model, torch.zeros(2, *spec.input_shape), spec.num_classes)
    saved.meta.update(document.model_extra or {})
    return saved
