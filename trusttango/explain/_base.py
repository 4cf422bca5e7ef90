"""The one attribution interface: ``Method(model, **options).attribute(inputs, target=None)``.

Shared plumbing for every method: input checks (shape, NaN), target resolution (``None`` =
predicted class, an ``int`` or an ``(N,)`` tensor), the class score ``y_c`` whose gradient or
change the methods explain, and a forward pass that records one layer's output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from trusttango.errors import InputError, require
from trusttango.models.folding import FoldedBatchNorm
from trusttango.modes import eval_mode
from trusttango.torchutil import capture, check_batch, model_device

Target = int | torch.Tensor | None


def check_inputs(inputs: torch.Tensor, images: bool = False) -> torch.Tensor:
    """Refuse non-tensors, NaN/inf (:func:`~trusttango.torchutil.check_batch`) and, for image
    methods, anything but ``(N, C, H, W)``."""
    check_batch(inputs)
    if images:
        require(inputs.dim() == 4, f"inputs: expected images shaped (N, C, H, W), got {tuple(inputs.shape)}")
    return inputs


def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` checked to be logits ``(N, K)``; a shape mismatch becomes an :class:`InputError`."""
    try:
        out = model(x)
    except (RuntimeError, ValueError) as err:  # layers report a shape mismatch as either
        raise InputError(
            f"inputs: shape {tuple(x.shape[1:])} does not fit the model ({str(err).splitlines()[0]})"
        ) from None
    require(out.dim() == 2 and out.shape[0] == x.shape[0], f"model: expected logits (N, K), got {tuple(out.shape)}")
    return out


def forward_recording(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, detach: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``(forward(model, x), outputs)``: the logits and every output ``layer`` gave during that
    pass (one entry per call), kept in the graph unless ``detach``; the hook is removed after."""
    with capture(model, [layer], detach=detach) as cap:
        logits = forward(model, x)
    return logits, cap.outputs[str(id(layer))]


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

    Every ``attribute`` explains the model's inference function: it runs in eval mode
    (BatchNorm on running statistics, no dropout, so no statistic moves) and afterwards each
    submodule is back in the train/eval mode it had (:func:`~trusttango.modes.eval_mode`).

    Passes that only need the model's function (not a named inner layer) go through :attr:`net`:
    for an eval-mode model its BatchNorm-folded view (:class:`~trusttango.models.folding.FoldedBatchNorm`,
    the same function with fewer layers); set ``fold_batchnorm = False`` to use the model as given.
    """

    images_only = False
    fold_batchnorm = True

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "attribute" in cls.__dict__:
            cls.attribute = _in_eval_mode(cls.__dict__["attribute"])

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


def _in_eval_mode(attribute: Callable) -> Callable:
    """``attribute`` run under :func:`~trusttango.modes.eval_mode` of ``self.model``."""

    @functools.wraps(attribute)
    def run(self: Attribution, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        with eval_mode(self.model):
            return attribute(self, inputs, target)

    return run


def input_gradient(model: nn.Module, x: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """``(d y_c / d x, target)`` with one forward and one backward pass."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(model, x)
        t = resolve_target(target, logits)
        (grad,) = torch.autograd.grad(class_score(logits, t), x)
    return grad, t
