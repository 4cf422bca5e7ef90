"""Run a model in eval mode and put every submodule back in the mode it was in.

``model.train(was_training)`` is not a restore: it sets *every* submodule to the top module's
flag, so a fresh wrapper (``nn.Sequential(user_model, ...)``, in training mode by default)
around an eval-mode model would leave the user's model in training mode (dropout on, BatchNorm
on batch statistics). :func:`eval_mode` records and restores each submodule's own flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``with eval_mode(model):`` runs ``model`` in eval mode; afterwards (also after an error)
    each of its modules is in the mode it had before."""
    modes = [(module, module.training) for module in model.modules()]
    if any(training for _, training in modes):  # a model already in eval mode is left untouched
        model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            if module.training != training:  # only what changed: setting a flag costs a Module.__setattr__
                module.training = training
