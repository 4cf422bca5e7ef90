"""Meaningful perturbation masks (Fong & Vedaldi 2017, eq. 3-4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, Target, forward, resolve_target

PERTURBATIONS = ("blur", "constant", "noise")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(N, C, H, W)`` with reflect padding (kernel radius ``3 sigma``)."""
    if sigma <= 0:
        return x
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[2:]) - 1))
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.transpose(2, 3), groups=x.shape[1])


def reference(x: torch.Tensor, kind: str, sigma: float, noise_std: float) -> torch.Tensor:
    """The perturbed image ``x0`` that deleted regions are replaced by: blur, mean colour or noise."""
    require(kind in PERTURBATIONS, f"perturbation: expected one of {', '.join(PERTURBATIONS)}, got {kind!r}")
    if kind == "blur":
        return gaussian_blur(x, sigma)
    if kind == "constant":
        return x.mean((2, 3), keepdim=True).expand_as(x)
    return x + noise_std * torch.randn_like(x)


def total_variation(m: torch.Tensor, beta: float) -> torch.Tensor:
    """``sum_u |d_x m(u)|^beta + |d_y m(u)|^beta`` per mask (Fong & Vedaldi eq. 4)."""
    dy = (m[:, :, 1:, :] - m[:, :, :-1, :]).abs().pow(beta).flatten(1).sum(1)
    dx = (m[:, :, :, 1:] - m[:, :, :, :-1]).abs().pow(beta).flatten(1).sum(1)
    return dx + dy


def _jitter(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    if max_shift <= 0:
        return x
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


class MeaningfulPerturbation(Attribution):
    """Learn the smallest smooth deletion mask that destroys the class probability.

    Minimises ``l1 ||1 - m||_1 + tv TV_beta(m) + E_tau p_c(x_tau)`` with
    ``x = m * x + (1 - m) * x0`` (``x0``: blur / constant / noise), the mask ``m`` of side
    ``mask_size`` upsampled bilinearly and blurred, the perturbed image shifted by up to
    ``jitter`` px each step. Defaults are the authors' (Fong & Vedaldi 2017): 300 Adam steps, lr 0.1,
    ``l1 = 1e-4``, ``tv = 1e-2``, ``beta = 3``, jitter 4 px; mask side ``H/8`` (28 for 224) and
    blur sigma ``10 * H / 224``. Returns the deletion map ``1 - m`` repeated over channels.
    """

    images_only = True

    def __init__(
        self,
        model: nn.Module,
        steps: int = 300,
        lr: float = 0.1,
        l1: float = 1e-4,
        tv: float = 1e-2,
        beta: float = 3.0,
        jitter: int = 4,
        perturbation: str = "blur",
        mask_size: int | None = None,
        sigma: float | None = None,
        noise_std: float = 0.2,
        seed: int = 0,
    ) -> None:
        super().__init__(model)
        require(perturbation in PERTURBATIONS, f"perturbation: expected one of {', '.join(PERTURBATIONS)}")
        require(steps >= 1, f"steps: expected >= 1, got {steps}")
        self.steps, self.lr, self.l1, self.tv, self.beta, self.jitter = steps, lr, l1, tv, beta, jitter
        self.perturbation, self.mask_size, self.sigma, self.noise_std, self.seed = (
            perturbation, mask_size, sigma, noise_std, seed
        )  # fmt: skip

    def _upsample(self, m: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
        return gaussian_blur(F.interpolate(m, size, mode="bilinear", align_corners=False), sigma)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        n, _, h, w = x.shape
        side = self.mask_size or max(2, min(h, w) // 8)
        sigma = self.sigma if self.sigma is not None else 10.0 * h / 224
        gen_state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)
        try:
            with torch.no_grad():
                t = resolve_target(target, forward(self.net, x))
                x0 = reference(x, self.perturbation, sigma, self.noise_std)
            m = torch.ones(n, 1, side, side, device=x.device, requires_grad=True)
            opt = torch.optim.Adam([m], lr=self.lr)
            for _ in range(self.steps):
                with torch.enable_grad():
                    up = self._upsample(m, (h, w), sigma / 2)
                    pert = _jitter(up * x + (1 - up) * x0, self.jitter)
                    prob = forward(self.net, pert).softmax(1).gather(1, t[:, None]).squeeze(1)
                    loss = self.l1 * (1 - m).abs().flatten(1).sum(1) + self.tv * total_variation(m, self.beta) + prob
                    opt.zero_grad()
                    loss.sum().backward()
                opt.step()
                with torch.no_grad():
                    m.clamp_(0, 1)
        finally:
            torch.random.set_rng_state(gen_state)
        with torch.no_grad():
            return (1 - self._upsample(m, (h, w), sigma / 2)).clamp(0, 1).expand_as(x).contiguous()
