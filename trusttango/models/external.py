"""Bring your own model: a torchvision architecture with the user's weights, the user's own
code, or an ONNX file (:mod:`trusttango.models.onnx`), audited like a trusttango model.

Nothing the user did not write is unpickled: weights come from safetensors, or from a
``.pt``/``.pth`` state dict read with ``torch.load(weights_only=True)``, which refuses every
pickled object but tensors and plain containers. ``code="net.py:build"`` **imports and runs
the user's file** (or module) to build the network: it is trusted like any code the user runs.

Every such model is wrapped in :class:`PixelSpace`, so the audit feeds it images in [0, 1]
and attacks, certificates and explanations mean the same thing for every model: the wrapper
maps [0, 1] to the value range the user's model expects and applies its per-channel
normalisation. The :class:`ModelSpec` that says how is written as ``model_spec.json``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.io import SavedModel, load_state
from trusttango.schema import STRICT, first_error, read
from trusttango.torchutil import model_device

SPEC_FILE = "model_spec.json"
WRAPPERS = ("state_dict", "model_state_dict", "model")  # checkpoint keys that hold the state dict


class ModelSpec(BaseModel):
    """What the model takes and gives: one example's shape, the value range and per-channel
    mean/std its first layer expects, and its class names; ``source`` says where it came from."""

    model_config = ConfigDict(extra="forbid")

    input_shape: tuple[int, ...]
    num_classes: int
    class_names: list[str]
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    source: dict[str, str | int | float | bool | None] = {}

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        channels = self.input_shape[0] if self.input_shape else 0
        if self.num_classes < 2 or len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} outputs")
        if not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value range {self.value_range}: expected low < high")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std: give both or neither")
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels):
                raise ValueError(f"{name}: expected {channels} value(s), one per channel (or 1), got {len(values)}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"std: expected > 0, got {self.std}")
        return self

    @classmethod
    def checked(cls, **fields: object) -> ModelSpec:
        """The spec of ``fields``, or an :class:`InputError` naming the first bad field."""
        try:
            return cls(**fields)
        except ValidationError as err:
            raise InputError(f"model spec: {first_error(err)}") from None

    def write(self, folder: Path) -> Path:
        """Write ``folder/model_spec.json``; returns its path."""
        path = Path(folder) / SPEC_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def read(cls, path: Path) -> ModelSpec:
        """A validated spec from ``path``; a bad field is named in a one-line :class:`InputError`."""
        return read(cls, path)


class PixelSpace(nn.Module):
    """``net`` fed images in [0, 1]: ``x`` is mapped to ``spec.value_range``, then normalised
    with ``spec.mean``/``spec.std`` per channel, then passed to ``net``."""

    def __init__(self, net: nn.Module, spec: ModelSpec) -> None:
        super().__init__()
        self.net = net
        low, high = spec.value_range
        channels = spec.input_shape[0]
        mean = torch.tensor(spec.mean or [0.0], dtype=torch.float32).expand(channels)
        std = torch.tensor(spec.std or [1.0], dtype=torch.float32).expand(channels)
        view = (1, channels, *[1] * (len(spec.input_shape) - 1))
        device = next(net.parameters(), torch.empty(0)).device  # where the user's network lives
        self.register_buffer("scale", ((high - low) / std).reshape(view).to(device), persistent=False)
        self.register_buffer("shift", ((low - mean) / std).reshape(view).to(device), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """What ``net`` is given for the pixels ``x``."""
        return x * self.scale + self.shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    def get_submodule(self, target: str) -> nn.Module:
        """A module by its name in the wrapper (``net.layer4``) or, as the user knows it, in their
        network (``layer4``): ``--layer`` and the detectors' layers take the user's own names."""
        try:
            return super().get_submodule(target)
        except AttributeError:
            return self.net.get_submodule(target)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors``, or from ``.pt``/``.pth`` with ``weights_only=True``
    (nothing else is unpickled); a checkpoint that nests it under ``state_dict``, ``model_state_dict``
    or ``model`` is unwrapped, and a ``module.`` prefix (DataParallel) removed."""
    path = Path(path)
    require(path.is_file(), f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except (SafetensorError, OSError) as err:
            raise InputError(f"{path}: not a safetensors file ({err})") from None
    else:
        require(path.suffix in (".pt", ".pth"), f"{path}: expected .safetensors, .pt or .pth weights")
        state = _torch_state(path)
    return _plain_state(state, path)


def _torch_state(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            f"{path}: refused: it holds pickled objects other than tensors; save model.state_dict() "
            "or safetensors (nothing in it was run)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a PyTorch state dict ({str(err).splitlines()[0]})") from None


def _plain_state(state: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and len(state) == 1 and next(iter(state)) in WRAPPERS:
        state = next(iter(state.values()))
    require(
        isinstance(state, dict) and bool(state) and all(isinstance(v, torch.Tensor) for v in state.values()),
        f"{path}: expected a state dict (tensor names -> tensors)",
    )
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def torchvision_model(arch: str, num_classes: int, in_channels: int | None = None) -> nn.Module:
    """torchvision's ``arch`` with ``num_classes`` outputs and no pretrained weights; with
    ``in_channels``, its first convolution is rebuilt with that many input channels (kernel,
    stride, padding and bias kept), as one adapts a ResNet to grey images."""
    import torchvision

    names = torchvision.models.list_models(torchvision.models)
    require(arch in names, f"--arch: unknown torchvision architecture {arch!r} (e.g. {', '.join(names[:6])}, ...)")
    net = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    if in_channels is not None:
        _adapt_first_conv(net, in_channels)
    return net


def _adapt_first_conv(net: nn.Module, in_channels: int) -> None:
    require(in_channels >= 1, f"--in-channels: expected >= 1, got {in_channels}")
    name, conv = next(((n, m) for n, m in net.named_modules() if isinstance(m, nn.Conv2d)), (None, None))
    require(conv is not None, "--in-channels: the architecture has no Conv2d to adapt")
    parent = net.get_submodule(name.rpartition(".")[0])
    new = nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None)  # fmt: skip
    setattr(parent, name.rpartition(".")[2], new)


def code_model(target: str) -> nn.Module:
    """Import ``path/to/file.py:function`` or ``package.module:function`` and call ``function()``;
    it must return an ``nn.Module``. The user's code runs: it is trusted like any code they run."""
    where, sep, attr = target.rpartition(":")
    require(bool(sep and where and attr), f"--model-code: expected FILE.py:FUNCTION or MODULE:FUNCTION, got {target!r}")
    module = _import_user_module(where)
    build = getattr(module, attr, None)
    require(build is not None, f"--model-code: {where} defines no {attr!r}")
    require(callable(build), f"--model-code: {where}:{attr} is not callable")
    try:
        net = build()
    except Exception as err:  # the user's code: any failure is theirs to fix, reported in one line
        raise InputError(f"--model-code: {target}() raised {type(err).__name__}: {err}") from None
    require(isinstance(net, nn.Module), f"--model-code: {target}() returned {type(net).__name__}, not an nn.Module")
    return net


def _import_user_module(where: str) -> object:
    if where.endswith(".py"):
        path = Path(where)
        require(path.is_file(), f"--model-code: {path} not found")
        spec = importlib.util.spec_from_file_location(f"trusttango_user_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses and pickling look modules up by name
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(where)
    except ImportError as err:
        raise InputError(f"--model-code: cannot import {where} ({err})") from None


@dataclass
class ModelSource:
    """A model the user brings (exactly one of ``arch``, ``code``, ``onnx``, or ``module``: an
    ``nn.Module`` from Python) and how to feed it.

    ``weights`` go with ``arch``, ``code`` or ``module``; ``num_classes`` defaults to the data's;
    ``class_names`` is a text file (one per line), default the data's.
    """

    __pydantic_config__ = {**STRICT, "arbitrary_types_allowed": True}  # read from an audit YAML (trusttango.schema)

    arch: str | None = None
    code: str | None = None
    onnx: Path | None = None
    weights: Path | None = None
    num_classes: int | None = None
    in_channels: int | None = None
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    class_names: Path | None = None
    module: nn.Module | None = None

    def describe(self) -> dict[str, str | int | None]:
        """Where the model came from, for the report."""
        kind = "torchvision" if self.arch else "code" if self.code else "onnx" if self.onnx else "python"
        what = self.arch or self.code or (str(self.onnx) if self.onnx else type(self.module).__name__)
        return {"kind": kind, "model": what, "weights": str(self.weights) if self.weights else None}

    def spec(self, data: object) -> ModelSpec:
        """The spec for ``data`` (a dataset with ``input_shape``, ``num_classes``, ``class_names``)."""
        given = [name for name in ("arch", "code", "onnx", "module") if getattr(self, name) is not None]
        require(len(given) == 1, f"give exactly one of --arch, --model-code, --onnx (got {len(given)})")
        require(self.module is None or isinstance(self.module, nn.Module), "model: expected an nn.Module")
        require(self.onnx is None or self.weights is None, "--weights: an ONNX file holds its own weights")
        names = list(data.class_names)
        if self.class_names is not None:
            require(Path(self.class_names).is_file(), f"--class-names: {self.class_names} not found")
            names = [line.strip() for line in Path(self.class_names).read_text().splitlines() if line.strip()]
        k = self.num_classes or data.num_classes
        require(k == data.num_classes, f"--num-classes {k}: the data has {data.num_classes} classes")
        return ModelSpec.checked(
            input_shape=tuple(data.input_shape), num_classes=k, class_names=names, value_range=self.value_range,
            mean=self.mean, std=self.std, source=self.describe(),
        )  # fmt: skip

    def load(self, data: object) -> SavedModel:
        """The model in pixel space, in eval mode, its output checked on ``data`` (an ONNX model's
        conversion also checked against onnxruntime on up to 256 of its examples)."""
        saved = self.build(self.spec(data))
        check_output(saved.model, data.x[:2], data.num_classes)
        if self.onnx is not None and "black_box" not in saved.meta:
            from trusttango.models.onnx import parity

            difference = parity(saved.model, Path(self.onnx), data.x[:256], saved.model.preprocess)
            saved.config.source["onnx_max_logit_difference"] = difference
        return saved

    def build(self, spec: ModelSpec) -> SavedModel:
        """The model of ``spec`` in pixel space, in eval mode, its weights loaded (its output
        unchecked: :meth:`load` checks it on data). An ONNX graph that cannot be converted runs in
        onnxruntime itself, and the model is marked black-box (``meta["black_box"]``: why)."""
        meta = {"source": spec.source}
        if self.onnx is not None:
            from trusttango.models.onnx import NotConvertible, OnnxRuntimeModel, onnx_model

            try:
                net = onnx_model(Path(self.onnx))
            except NotConvertible as err:
                net = OnnxRuntimeModel(Path(self.onnx))
                meta["black_box"] = spec.source["black_box"] = f"{err}; run by onnxruntime, without gradients"
        else:
            net = self._network(spec.num_classes)
            if self.weights is not None:
                load_state(net, read_weights(self.weights), Path(self.weights), against=self.describe()["model"])
        return SavedModel(PixelSpace(net, spec).eval(), spec, spec.class_names, meta)

    def _network(self, num_classes: int) -> nn.Module:
        if self.module is not None:
            return self.module
        return torchvision_model(self.arch, num_classes, self.in_channels) if self.arch else code_model(self.code)


def check_output(model: nn.Module, x: torch.Tensor, num_classes: int) -> None:
    """Refuse a model whose output on ``x`` (moved to the model's device) is not ``(N, num_classes)`` logits."""
    try:
        with torch.no_grad():
            out = model(x.to(model_device(model)))
    except RuntimeError as err:
        raise InputError(f"model: fails on inputs shaped {tuple(x.shape)} ({str(err).splitlines()[0]})") from None
    require(isinstance(out, torch.Tensor), f"model: returned {type(out).__name__}, expected a tensor of logits")
    expected = (len(x), num_classes)
    require(tuple(out.shape) == expected, f"model: output shaped {tuple(out.shape)}, the data needs {expected}")
