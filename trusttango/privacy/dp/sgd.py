"""DP-SGD (Abadi et al. 2016, "Deep Learning with Differential Privacy", Algorithm 1) as a
training :class:`~trusttango.train.Hook` over Opacus.

Each step draws a Poisson lot (every example independently with rate ``q = L / N``),
clips each per-example gradient to norm ``C``, sums, adds ``N(0, sigma^2 C^2 I)`` and
divides by the expected lot size. The privacy loss is tracked by an RDP (Mironov 2017) or
PRV (Gopi et al. 2021) accountant, reported as an upper bound on epsilon at ``delta``.

Virtual batches: each Poisson lot is cut into physical batches of at most
``max_physical_batch_size`` examples (Opacus' ``BatchMemoryManager``; default
:data:`PHYSICAL_BATCH`); clipped gradients are summed over a lot's pieces and the noisy step is
taken once per lot, so the lot, the noise and the accountant's steps are those of the unsplit
run while memory is bounded (materialising per-example gradients is memory-bound, so on CPU
the split is usually faster too; ``benchmarks/bench_privacy.py steps`` measures it).
``None`` runs each lot in one pass.

Opacus is imported when a hook is set up, not when this module is imported.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING

from torch import nn

from trusttango.errors import InputError, require
from trusttango.privacy.dp.accountants import check_accountant, quiet
from trusttango.torchutil import model_device
from trusttango.train import EpochRecord, Hook, TrainState

if TYPE_CHECKING:
    from opacus import PrivacyEngine

GRAD_SAMPLE_MODES = ("hooks", "ghost", "functorch", "ew")
PHYSICAL_BATCH = 256  # default rows per forward/backward pass (virtual batches); None: one pass per lot
log = logging.getLogger(__name__)


def make_dp_compatible(model: nn.Module) -> list[str]:
    """Replace, in place, the layers DP-SGD cannot handle with Opacus' fixes (BatchNorm ->
    GroupNorm, LSTM -> DPLSTM, ...) and return what was replaced. Raises :class:`InputError`
    naming any layer Opacus still rejects."""
    from opacus.validators import ModuleValidator

    replaced: list[str] = []
    device = model_device(model)

    def walk(module: nn.Module, prefix: str) -> None:
        for name, child in module.named_children():
            fixer = ModuleValidator.FIXERS.get(type(child))
            if fixer is None:
                walk(child, f"{prefix}{name}.")
                continue
            new = fixer(child).to(device)
            setattr(module, name, new)
            replaced.append(f"{prefix}{name}: {type(child).__name__} -> {type(new).__name__}")

    walk(model, "")
    for name, layer in model.named_modules():
        validator = ModuleValidator.VALIDATORS.get(type(layer))
        errors = validator(layer) if validator else []
        if errors:
            raise InputError(f"model: layer {name!r} ({type(layer).__name__}) is not supported by DP-SGD: {errors[0]}")
    return replaced


class DPSGD(Hook):
    """Train with DP-SGD. Give either ``epsilon`` (the noise multiplier is calibrated so the
    whole run spends exactly that budget) or ``noise_multiplier`` (sigma, fixed).

    ``grad_sample_mode="ghost"`` uses ghost clipping (Li et al. 2022): per-example gradient
    norms without materialising per-example gradients. After :func:`~trusttango.train.fit`
    the per-epoch ``epsilon`` is in each record's ``extra``; :meth:`meta` gives the guarantee.
    ``max_physical_batch_size`` bounds the examples per forward/backward pass (virtual batches;
    ``None``: one pass per lot).
    """

    def __init__(
        self,
        epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        noise_multiplier: float | None = None,
        accountant: str = "rdp",
        grad_sample_mode: str = "hooks",
        max_physical_batch_size: int | None = PHYSICAL_BATCH,
    ) -> None:
        require((epsilon is None) != (noise_multiplier is None), "dp: give exactly one of epsilon or noise_multiplier")
        require(epsilon is None or (math.isfinite(epsilon) and epsilon > 0), f"epsilon must be > 0, got {epsilon}")
        require(
            noise_multiplier is None or (math.isfinite(noise_multiplier) and noise_multiplier > 0),
            f"noise_multiplier must be a finite value > 0, got {noise_multiplier}",
        )
        require(delta is None or 0 < delta < 1, f"delta must lie in (0, 1), got {delta}")
        require(max_grad_norm > 0, f"max_grad_norm must be > 0, got {max_grad_norm}")
        check_accountant(accountant)
        require(grad_sample_mode in GRAD_SAMPLE_MODES, f"unknown grad_sample_mode {grad_sample_mode!r}")
        require(
            max_physical_batch_size is None or max_physical_batch_size >= 1,
            f"max_physical_batch_size must be >= 1, got {max_physical_batch_size}",
        )
        self.epsilon, self.delta, self.max_grad_norm = epsilon, delta, max_grad_norm
        self.noise_multiplier, self.accountant, self.grad_sample_mode = noise_multiplier, accountant, grad_sample_mode
        self.max_physical_batch_size = max_physical_batch_size
        self.engine: PrivacyEngine | None = None
        self.sample_rate: float | None = None
        self.replaced: list[str] = []
        self.steps = 0
        self._wrapped: nn.Module | None = None

    def setup(self, state: TrainState) -> None:
        n = len(state.loader.dataset)
        if self.delta is None:
            self.delta = min(1e-5, 0.1 / n)
        require(
            self.delta < 1 / n,
            f"delta {self.delta} >= 1/N = {1 / n:.2g}: a mechanism that publishes one whole record "
            "meets it, so it guarantees nothing; use delta < 1/N",
        )
        self.replaced = make_dp_compatible(state.model)
        if self.replaced:
            log.warning("DP-SGD: made the model DP-compatible: %s", ", ".join(self.replaced))
        optimizer = state.optimizer  # fresh (no state yet): re-point it at the fixed model's parameters
        optimizer.param_groups = []
        optimizer.add_param_group({"params": [p for p in state.model.parameters() if p.requires_grad]})
        out = self._make_private(state, optimizer)
        if self.grad_sample_mode == "ghost":
            state.model, state.optimizer, state.criterion, state.loader = out
        else:
            state.model, state.optimizer, state.loader = out
        self._wrapped = state.model
        self.noise_multiplier = state.optimizer.noise_multiplier
        self.sample_rate = state.loader.sample_rate
        if self.max_physical_batch_size is not None:
            from opacus.utils.batch_memory_manager import wrap_data_loader

            state.loader = wrap_data_loader(
                data_loader=state.loader, max_batch_size=self.max_physical_batch_size, optimizer=state.optimizer
            )

    def _make_private(self, state: TrainState, optimizer) -> tuple:
        """Opacus' private (model, optimizer, [criterion,] Poisson loader) for ``state``."""
        from opacus import PrivacyEngine

        common = dict(
            module=state.model,
            optimizer=optimizer,
            data_loader=state.loader,
            criterion=state.criterion,
            max_grad_norm=self.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=self.grad_sample_mode,
        )
        with warnings.catch_warnings(), quiet():
            warnings.filterwarnings("ignore", message=".*[Ss]ecure RNG.*")
            self.engine = PrivacyEngine(accountant=self.accountant)
            if self.epsilon is None:
                return self.engine.make_private(**common, noise_multiplier=self.noise_multiplier)
            return self.engine.make_private_with_epsilon(
                **common, target_epsilon=self.epsilon, target_delta=self.delta, epochs=state.config.epochs
            )

    def spent(self) -> float:
        """Epsilon spent so far at :attr:`delta` (0 before the first step)."""
        require(self.engine is not None, "dp: the hook has not been set up by fit()")
        if not self.engine.accountant.history:
            return 0.0
        with quiet():
            return float(self.engine.get_epsilon(self.delta))

    def epoch_end(self, state: TrainState, record: EpochRecord) -> None:
        self.steps = sum(steps for *_, steps in self.engine.accountant.history)  # noisy steps, one per lot
        record.extra["epsilon"] = self.spent()

    def release(self) -> None:
        """Remove Opacus' hooks from the trained model (idempotent); it is then a plain module."""
        if self._wrapped is not None and hasattr(self._wrapped, "_close"):
            self._wrapped._close()
        self._wrapped = None

    def meta(self) -> dict:
        self.release()
        return {
            "privacy": {
                "epsilon": self.spent(),
                "delta": self.delta,
                "accountant": self.accountant,
                "noise_multiplier": self.noise_multiplier,
                "max_grad_norm": self.max_grad_norm,
                "sample_rate": self.sample_rate,
                "steps": self.steps,
                "max_physical_batch_size": self.max_physical_batch_size,
                "replaced_layers": self.replaced,
            }
        }
