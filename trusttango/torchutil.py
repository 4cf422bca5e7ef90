"""Torch helpers every pillar shares: the model's device, submodule lookup, hook capture,
batched forward passes and penultimate features.

Every forward hook in the library is registered through :class:`capture` (or
:func:`hooked`), which owns its handles and removes them on exit, also after an error,
the pattern of pytorch-grad-cam's ``ActivationsAndGradients``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from trusttango.errors import InputError, require
from trusttango.modes import eval_mode


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def find_module(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """The submodule named ``layer`` (dotted path, as in ``model.named_modules()``), or
    ``layer`` itself when it is a module of ``model``; :class:`InputError` otherwise."""
    if isinstance(layer, nn.Module):
        require(any(m is layer for m in model.modules()), "layer: the given module is not part of the model")
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError:
        raise InputError(f"layer: no module named {layer!r} in the model") from None


def module_names(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> list[str]:
    """Names of the submodules of ``model`` that are instances of ``kind``, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, kind) and name]


class capture:
    """``with capture(model, ["layer1", "fc"]) as cap: model(x)`` records each layer's forward
    output in ``cap.outputs[name]`` (a list, one entry per call: a module used twice in one
    forward pass, like torchvision ResNet's shared ReLU, appends twice).

    ``inputs=True`` records the module's first positional input instead of its output;
    ``detach=False`` keeps the tensors in the graph (for gradients at the layer). Hooks are
    removed in ``__exit__``, also when the body raises.
    """

    def __init__(
        self, model: nn.Module, layers: Sequence[str | nn.Module], inputs: bool = False, detach: bool = True
    ) -> None:
        self.model, self.layers, self.inputs, self.detach = model, list(layers), inputs, detach

    def __enter__(self) -> capture:
        self.outputs: dict[str, list[torch.Tensor]] = {}
        self._handles = []
        for layer in self.layers:
            key = layer if isinstance(layer, str) else str(id(layer))
            self.outputs[key] = []
            module = find_module(self.model, layer)
            self._handles.append(module.register_forward_hook(self._record(self.outputs[key])))
        return self

    def _record(self, store: list[torch.Tensor]) -> Callable:
        def hook(_module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            value = args[0] if self.inputs else out
            store.append(value.detach() if self.detach and isinstance(value, torch.Tensor) else value)

        return hook

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def hooked(module: nn.Module, hook: Callable, kind: str = "forward") -> Iterator[None]:
    """Register one ``forward`` / ``forward_pre`` / ``full_backward`` hook on ``module`` for the
    duration of the ``with`` block; it is removed on exit, also after an error."""
    register = {
        "forward": module.register_forward_hook,
        "forward_pre": module.register_forward_pre_hook,
        "full_backward": module.register_full_backward_hook,
    }[kind]
    handle = register(hook)
    try:
        yield
    finally:
        handle.remove()


def check_batch(x: torch.Tensor, name: str = "inputs") -> torch.Tensor:
    """Refuse anything but a finite float tensor batch ``(N, ...)`` with N > 0."""
    require(isinstance(x, torch.Tensor), f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    require(x.is_floating_point(), f"{name}: expected a float tensor, got {x.dtype}")
    require(x.dim() >= 2 and x.shape[0] > 0, f"{name}: expected a batch (N, ...), got {tuple(x.shape)}")
    require(bool(torch.isfinite(x).all()), f"{name}: contain NaN or infinite values")
    return x


@torch.no_grad()
def batched_forward(
    model: nn.Module, x: torch.Tensor, batch_size: int = 512, fn: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """``fn(batch)`` (default ``model(batch)``) over ``x`` in batches of ``batch_size`` on the
    model's device, in eval mode (each submodule's flag restored); the result on the CPU."""
    require(batch_size > 0, f"batch_size: expected a positive integer, got {batch_size}")
    device, fn = model_device(model), fn or model
    with eval_mode(model):
        return torch.cat([fn(b.to(device)).cpu() for b in x.split(batch_size)])


def last_linear(model: nn.Module) -> nn.Module:
    """The model's last :class:`torch.nn.Linear` (the classifier head of most networks)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    require(bool(linears), "model: no nn.Linear layer to take penultimate features from")
    return linears[-1]


def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Penultimate features ``(N, D)`` of ``x``: ``model.features(x)`` when the model has such a
    method (trusttango's :class:`~trusttango.models.UnifiedModel`), else the flattened input of
    the model's last ``nn.Linear`` (any torchvision or user classifier)."""
    features = getattr(model, "features", None)
    if callable(features) and not isinstance(features, nn.Module):
        return batched_forward(model, x, batch_size, fn=lambda b: features(b).flatten(1))

    def head_input(b: torch.Tensor) -> torch.Tensor:
        with capture(model, [head], inputs=True) as cap:
            model(b)
        return cap.outputs[str(id(head))][0].flatten(1)

    head = last_linear(model)
    return batched_forward(model, x, batch_size, fn=head_input)
