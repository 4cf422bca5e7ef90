"""The one attribution interface: ``Method(model, **options).attribute(inputs, target=None)``.

Shared plumbing for every method: input checks (shape, NaN), the model's device, target
resolution (``None`` = predicted class, an ``int`` or an ``(N,)`` tensor) and the class
score ``y_c`` whose gradient or change the methods explain.
"""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.folding import FoldedBatchNorm

Target = int | torch.Tensor | None


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a parameter-free model)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def check_inputs(inputs: torch.Tensor, images: bool = False) -> torch.Tensor:
    """Refuse non-tensors, NaN/inf and (for image methods) anything but ``(N, C, H, W)``."""
    require(isinstance(inputs, torch.Tensor), f"inputs: expected a torch.Tensor, got {type(inputs).__name__}")
    require(inputs.is_floating_point(), f"inputs: expected a float tensor, got {inputs.dtype}")
    require(inputs.dim() >= 2 and inputs.shape[0] > 0, f"inputs: expected a batch (N, ...), got {tuple(inputs.shape)}")
    if images:
        require(inputs.dim() == 4, f"inputs: expected images shaped (N, C, H, W), got {tuple(inputs.shape)}")
    require(bool(torch.isfinite(inputs).all()), "inputs: contain NaN or infinite values")
    return inputs


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` checked to be logits ``(N, K)``; a shape mismatch becomes an :class:`InputError`."""
    try:
        out = model(x)
    except RuntimeError as err:
        raise InputError(
            f"inputs: shape {tuple(x.shape[1:])} does not fit the model ({str(err).splitlines()[0]})"
        ) from None
    require(out.dim() == 2 and out.shape[0] == x.shape[0], f"model: expected logits (N, K), got {tuple(out.shape)}")
    return out


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """``(N,)`` long class indices: the argmax of ``logits`` for ``None``, else ``target`` checked in range."""
    n, k = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(target, device=logits.device).long()
    if t.dim() == 0:
        t = t.expand(n)
    require(t.shape == (n,), f"target: expected an int or a tensor of shape ({n},), got shape {tuple(t.shape)}")
    bad = (t < 0) | (t >= k)
    require(not bool(bad.any()), f"target: class index out of range 0..{k - 1}: {t[bad].unique().tolist()}")
    return t


def class_score(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``sum_n y_{target_n}(x_n)``: one backward gives every example's gradient."""
    return logits.gather(1, target[:, None]).sum()


class Attribution:
    """Base class: subclasses implement :meth:`attribute`, returning maps shaped like ``inputs``.

    Passes that only need the model's function (not a named inner layer) go through :attr:`net`:
    for an eval-mode model its BatchNorm-folded view (:class:`~trusttango.models.folding.FoldedBatchNorm`,
    the same function with fewer layers); set ``fold_batchnorm = False`` to use the model as given.
    """

    images_only = False
    fold_batchnorm = True

    def __init__(self, model: nn.Module) -> None:
        require(isinstance(model, nn.Module), f"model: expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._folded = FoldedBatchNorm(model)

    @property
    def net(self) -> nn.Module:
        """The network the forward and backward passes run: ``model`` or its folded eval view."""
        return self._folded() if self.fold_batchnorm else self.model

    def _prepare(self, inputs: torch.Tensor) -> torch.Tensor:
        return check_inputs(inputs, self.images_only).detach().to(model_device(self.model))

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


def input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d y_c / d x, target)`` with one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(model, x)
        t = resolve_target(target, logits)
        (grad,) = torch.autograd.grad(class_score(logits, t), x)
    return grad, t
