"""Feature responses of an input at chosen layers, and the discovery of those layers.

The response of Amirian et al. 2018 ("Two to Trust", sec. 3) is the guided-backprop signal
(Springenberg et al. 2015) of the predicted class; here it can be read at the input or at any
module's output on the same backward pass, and the module's forward output (its activation)
can be read beside it.

Layer names are module names (``model.named_modules()``). A module called several times in
one forward pass (torchvision ResNet's blocks call one ``nn.ReLU`` twice) gives one response
per call, named ``"<module>#<call>"`` (``"layer1.0.relu#0"``, ``"layer1.0.relu#1"``); a plain
name then refers to nothing and is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack

import torch
from torch import nn

from trusttango.errors import require
from trusttango.modes import eval_mode
from trusttango.torchutil import find_module, hooked, model_device, module_names

GUIDED, ACTIVATION, BOTH = "guided", "activation", "both"
SIGNALS = (GUIDED, ACTIVATION, BOTH)
CALL = "#"


def split_layer(layer: str) -> tuple[str, int | None]:
    """``"layer1.0.relu#1"`` -> ``("layer1.0.relu", 1)``; ``"backbone.2"`` -> ``("backbone.2", None)``."""
    name, mark, call = layer.partition(CALL)
    require(not mark or call.isdigit(), f"layer: expected '<module>#<call number>', got {layer!r}")
    return name, int(call) if mark else None


def check_layer(model: nn.Module, layer: str) -> None:
    """Refuse a layer name whose module ``model`` does not have (:class:`InputError`)."""
    find_module(model, split_layer(layer)[0])


class _Recorder:
    """Forward outputs (and, with ``grads``, the gradients reaching them) of each call of some modules."""

    def __init__(self, model: nn.Module, names: Sequence[str], grads: bool) -> None:
        self.model, self.names, self.grads = model, list(dict.fromkeys(names)), grads
        self.acts: dict[str, list[torch.Tensor]] = {name: [] for name in self.names}
        self.grad: dict[str, dict[int, torch.Tensor]] = {name: {} for name in self.names}
        self._stack = ExitStack()

    def __enter__(self) -> _Recorder:
        for name in self.names:
            self._stack.enter_context(hooked(find_module(self.model, name), self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _hook(self, name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> None:
            call = len(self.acts[name])
            self.acts[name].append(out.detach())
            if self.grads and out.requires_grad:
                out.register_hook(lambda g: self.grad[name].__setitem__(call, g.detach()))

        return hook

    def call(self, layer: str) -> int:
        """The call index ``layer`` names, checked against the calls recorded."""
        name, call = split_layer(layer)
        calls = len(self.acts[name])
        if call is None:
            require(
                calls == 1,
                f"layer {name!r}: called {calls} times in one forward pass; "
                f"name one call as {name}{CALL}0 ... {name}{CALL}{max(calls - 1, 0)}",
            )
            return 0
        require(call < calls, f"layer {layer!r}: the module is called {calls} times in one forward pass")
        return call


def feature_responses(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str | None], signal: str = GUIDED
) -> list[torch.Tensor]:
    """Responses of ``x`` at each of ``layers`` (``None`` = the input), read on one pass.

    ``signal``: ``"guided"`` the guided-backprop signal of the predicted class at the layer,
    ``"activation"`` the layer's forward output (the input image itself for ``None``),
    ``"both"`` the two per layer (guided first).
    """
    from trusttango.explain import GuidedBackprop

    require(signal in SIGNALS, f"signal: expected one of {SIGNALS}, got {signal!r}")
    names = [split_layer(layer)[0] for layer in layers if layer is not None]
    with _Recorder(model, names, grads=signal != ACTIVATION) as rec:
        if signal == ACTIVATION:
            with torch.no_grad():
                model(x)
        else:
            at_input = GuidedBackprop(model).attribute(x, target=None)
    out = []
    for layer in layers:
        name, call = (None, 0) if layer is None else (split_layer(layer)[0], rec.call(layer))
        if signal != ACTIVATION:
            if name is not None:
                require(call in rec.grad[name], f"layer {layer!r}: not on the path to the logits")
            out.append(at_input if name is None else rec.grad[name][call])
        if signal != GUIDED:
            out.append(x.detach() if name is None else rec.acts[name][call])
    return out


def guided_response(model: nn.Module, x: torch.Tensor, layer: str | None = None) -> torch.Tensor:
    """The guided-backprop signal of the predicted class w.r.t. ``x``, or (``layer`` = a module
    name) w.r.t. that module's output, read on the same backward pass."""
    return feature_responses(model, x, [layer], GUIDED)[0]


def spatial_relu_layers(model: nn.Module, x: torch.Tensor) -> list[tuple[str, tuple[int, int]]]:
    """Names and output sizes (H, W) of the ReLU calls with 2-D feature maps, in the modules'
    definition order (a module called several times: ``"<module>#<call>"``, in call order).
    Measured on one example of ``x``, in eval mode (the model's flags are restored)."""
    relus = module_names(model, (nn.ReLU, nn.ReLU6))
    with _Recorder(model, relus, grads=False) as rec, eval_mode(model), torch.no_grad():
        model(x[:1].to(model_device(model)))
    found = []
    for name in relus:
        calls = rec.acts[name]
        for i, out in enumerate(calls):
            found.append((name if len(calls) == 1 else f"{name}{CALL}{i}", tuple(out.shape[2:])))
    return [(name, shape) for name, shape in found if len(shape) == 2]


def full_resolution_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """The deepest ReLU call whose output keeps the spatial size of the first ReLU's output
    (the last feature map before the first downsampling), or ``None`` (the input) if there is none."""
    spatial = spatial_relu_layers(model, x)
    if not spatial:
        return None
    return [name for name, shape in spatial if shape == spatial[0][1]][-1]
