"""Backward rules through ReLU: DeconvNet and guided backpropagation.

The forward pass is unchanged; only the ReLU's backward rule is replaced:

* DeconvNet (Zeiler & Fergus 2014, sec. 2.1): ``R_in = max(R_out, 0)`` (forward mask ignored),
* guided backprop (Springenberg et al. 2015, eq. in fig. 1): ``R_in = 1[x > 0] * max(R_out, 0)``.

A clipped ReLU ``min(max(x, 0), c)`` (ReLU6, MobileNet's activation: ``F.relu6`` or
``F.hardtanh`` with ``min_val = 0``) gets the same rules with its own gradient mask
``1[0 < x < c]``.

Hook-based tools attach the rule to ``nn.ReLU`` modules, which is wrong or silent when a
model reuses one ReLU module, applies it in place, or calls ``F.relu``. Here the rule is
installed by a :class:`~torch.overrides.TorchFunctionMode` that intercepts *every* ReLU call
(``nn.ReLU``, ``F.relu``, ``torch.relu``, ``Tensor.relu`` and their in-place forms) during
the forward pass, so each call gets its own rule with its own mask. Models with other
activations (GELU, SiLU, leaky ReLU, hardtanh, ...) or with no ReLU at all are refused with an
:class:`~trusttango.errors.InputError` rather than explained wrongly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from trusttango.errors import InputError, require
from trusttango.explain._base import Attribution, Target, class_score, forward, resolve_target
from trusttango.models.layers import HalfHuberReLU

_RELU = {F.relu, torch.relu, torch.Tensor.relu, F.relu_, torch.relu_, torch.Tensor.relu_}
_INPLACE = {F.relu_, torch.relu_, torch.Tensor.relu_}
_OTHER_ACTIVATIONS = {
    F.gelu: "gelu", F.silu: "silu", F.elu: "elu", F.leaky_relu: "leaky_relu", F.hardtanh: "hardtanh",
    F.softplus: "softplus", F.mish: "mish", F.hardswish: "hardswish", F.selu: "selu", F.celu: "celu",
    F.prelu: "prelu", F.rrelu: "rrelu",
}  # fmt: skip
_OTHER_MODULES = (HalfHuberReLU, nn.PReLU, nn.RReLU)


class _ReLURule(torch.autograd.Function):
    """``min(relu(x), high)`` forward; DeconvNet or guided backward. In-place variant marks ``x`` dirty."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, guided: bool, inplace: bool, high: float | None = None) -> torch.Tensor:
        mask = (x > 0) if high is None else (x > 0) & (x < high)
        ctx.guided = guided
        ctx.save_for_backward(mask)
        if inplace:
            ctx.mark_dirty(x)
            return x.clamp_(min=0, max=high)
        return x.clamp(min=0, max=high)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (mask,) = ctx.saved_tensors
        out = grad.clamp(min=0)
        return (out * mask if ctx.guided else out), None, None, None


def _argument(args: tuple, kwargs: dict, index: int, name: str, default: object) -> object:
    return kwargs.get(name, args[index] if len(args) > index else default)


def _clipped_relu(func, args: tuple, kwargs: dict) -> tuple[float, bool] | None:
    """``(high, inplace)`` when ``func(*args, **kwargs)`` is a clipped ReLU ``min(max(x, 0), high)``."""
    if func is F.relu6:
        return 6.0, bool(_argument(args, kwargs, 1, "inplace", False))
    if func is F.hardtanh and float(_argument(args, kwargs, 1, "min_val", -1.0)) == 0.0:
        return float(_argument(args, kwargs, 2, "max_val", 1.0)), bool(_argument(args, kwargs, 3, "inplace", False))
    return None


class _ReLURuleMode(TorchFunctionMode):
    """Replaces every ReLU call with :class:`_ReLURule`; refuses other activation functions."""

    def __init__(self, guided: bool) -> None:
        super().__init__()
        self.guided, self.calls = guided, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _RELU:
            self.calls += 1
            inplace = func in _INPLACE or bool(kwargs.get("inplace", args[1] if len(args) > 1 else False))
            return _ReLURule.apply(args[0], self.guided, inplace)
        if (clipped := _clipped_relu(func, args, kwargs)) is not None:
            self.calls += 1
            return _ReLURule.apply(args[0], self.guided, clipped[1], clipped[0])
        if func in _OTHER_ACTIVATIONS:
            name = _OTHER_ACTIVATIONS[func]
            raise InputError(f"model: uses {name}; DeconvNet / guided backprop are defined for ReLU networks only")
        return func(*args, **kwargs)


def rule_gradient(model: nn.Module, x: torch.Tensor, target: Target, guided: bool) -> torch.Tensor:
    """``d y_c / d x`` with the ReLU backward rule replaced (one forward, one backward)."""
    other = sorted({type(m).__name__ for m in model.modules() if isinstance(m, _OTHER_MODULES)})
    require(not other, f"model: uses {', '.join(other)}; DeconvNet / guided backprop need ReLU activations")
    x = x.detach().requires_grad_(True)
    mode = _ReLURuleMode(guided)
    with torch.enable_grad():
        with mode:
            logits = forward(model, x)
        require(mode.calls > 0, "model: no ReLU call found; DeconvNet / guided backprop need a ReLU network")
        t = resolve_target(target, logits)
        (grad,) = torch.autograd.grad(class_score(logits, t), x)
    return grad


class Deconvolution(Attribution):
    """DeconvNet map (Zeiler & Fergus 2014): gradient with ``R_in = max(R_out, 0)`` at each ReLU."""

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        return rule_gradient(self.net, self._prepare(inputs), target, guided=False)


class GuidedBackprop(Attribution):
    """Guided backpropagation (Springenberg et al. 2015): ``R_in = 1[x > 0] max(R_out, 0)`` at each ReLU.

    The feature response map of Amirian et al. 2018 for the predicted class.
    """

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        return rule_gradient(self.net, self._prepare(inputs), target, guided=True)
