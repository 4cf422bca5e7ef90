"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"), L-inf and L2: a score-based attack that needs the
model's outputs only, never its gradients. It runs on models whose gradients are unavailable (an
ONNX graph run by onnxruntime) and, in an evaluation, catches gradient masking: examples it
breaks that gradient attacks did not.
"""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import require
from trusttango.robust.base import RestartingAttack, at_least_one, batch_view, check_logits, flat_norm

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # p halves after each, on a 10,000-query scale


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The fraction of pixels a square covers at ``query`` of ``queries``: ``p_init`` halved at
    each step of :data:`SCHEDULE`, the schedule stretched to ``queries`` (as in the paper's code)."""
    scaled = int(query / queries * 10000)
    return p_init / 2 ** sum(scaled > step for step in SCHEDULE)


def rings(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """Nested rectangles around the centre ``(h // 2, w // 2)``: a pixel at Chebyshev distance
    ``d`` from it holds ``sum_{r >= d} 1 / (r + 1)^2`` over the rings ``r < max(h, w) // 2 + 1``;
    unit L2 norm."""
    reach = max(h, w) // 2 + 1
    tail = (1.0 / torch.arange(1, reach + 1, device=device, dtype=torch.float32) ** 2).flip(0).cumsum(0).flip(0)
    rows = (torch.arange(h, device=device) - h // 2).abs()[:, None]
    cols = (torch.arange(w, device=device) - w // 2).abs()[None, :]
    pattern = tail[torch.maximum(rows, cols)]
    return pattern / pattern.norm()


def meta_square(side: int, device: torch.device | None = None) -> torch.Tensor:
    """The L2 update of the Square Attack (sec. 3.2): the upper half :func:`rings` and the lower
    half minus :func:`rings`, together of unit L2 norm."""
    halves = [rings(side // 2, side, device)] if side > 1 else []
    pattern = torch.cat([*halves, -rings(side - side // 2, side, device)])
    return pattern / pattern.norm()


class Square(RestartingAttack):
    """Square Attack: random search over squares, L-inf or L2.

    Each query changes one random square per example (its side from :func:`square_fraction`)
    and keeps the change where the margin (true logit minus the largest other; targeted: the
    largest other minus the target's) decreases; examples already fooled spend no more queries.
    L-inf: the perturbation starts as vertical stripes of ``+-eps`` and a query sets the square
    to a new random sign per channel. L2: it starts as a grid of :func:`meta_square` patterns
    with random signs, rescaled to norm ``eps``; a query moves the perturbation's mass from a
    second random square into the first, adding a new signed :func:`meta_square` (the paper's
    alg. 3). Defaults are AutoAttack's (``p_init`` 0.8, 5,000 queries, one restart); ``eps`` as
    :func:`~trusttango.robust.base.default_eps`. Random draws use torch's global generator
    (seed it for repeatable results).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float | None = None,
        norm: str = "linf",
        queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model, eps, norm, restarts, targeted, bounds)
        require(self.eps > 0, f"eps: expected > 0, got {eps}")
        require(0 < p_init <= 1, f"p_init: expected in (0, 1], got {p_init}")
        self.queries, self.p_init = at_least_one(queries, "queries"), float(p_init)

    def _margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per example: <= 0 once adversarial (untargeted: ``z_y - max_{j != y} z_j``)."""
        with torch.no_grad():
            logits = self._net(x)
        check_logits(logits, len(x), y)
        own = logits.gather(1, y[:, None])[:, 0]
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return other - own if self.targeted else own - other

    def _check(self, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor | None) -> None:
        super()._check(x, y, labels)
        require(x.dim() == 4 and min(x.shape[2:]) >= 2, f"x: Square needs images (N, C, H, W), got {tuple(x.shape)}")

    def _run(
        self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, restart: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best, margin = self._search(x, y)
        return best, margin <= 0

    def _search(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of the random search: the best points and their margins."""
        best = self._start(x)
        margin = self._margin(best, y)
        for query in range(1, self.queries):
            active = (margin > 0).nonzero().flatten()
            if len(active) == 0:
                break
            self._on_time()
            fraction = square_fraction(self.p_init, query, self.queries)
            candidate = self._move(x[active], best[active], fraction)
            found = self._margin(candidate, y[active])
            better = found < margin[active]
            best[active[better]], margin[active[better]] = candidate[better], found[better]
        return best, margin

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        """L-inf: vertical stripes of ``+-eps``; L2: a grid of signed meta-squares of norm ``eps``."""
        n, c, h, w = x.shape
        if self.norm == "linf":
            return self._clip(x + self.eps * _signs((n, c, 1, w), x.device))
        side = max(min(h, w) // 5, 1)
        rows, cols = h // side, w // side
        patterns = torch.stack([_turned(meta_square(side, x.device), n=1)[0] for _ in range(rows * cols)])
        blocks = _signs((n, c, rows * cols, 1, 1), x.device) * patterns  # (n, c, blocks, side, side)
        grid = blocks.view(n, c, rows, cols, side, side).permute(0, 1, 2, 4, 3, 5).reshape(n, c, rows * side, -1)
        delta = torch.zeros_like(x)
        top, left = (h - rows * side) // 2, (w - cols * side) // 2
        delta[:, :, top : top + rows * side, left : left + cols * side] = grid
        return self._on_sphere(x, delta)

    def _on_sphere(self, x: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        return self._clip(x + self.eps * delta / batch_view(flat_norm(delta, 2).clamp_min(1e-12), delta))

    def _move(self, x: torch.Tensor, best: torch.Tensor, fraction: float) -> torch.Tensor:
        """One query's candidate: a square covering ``fraction`` of the pixels changed."""
        h, w = x.shape[2:]
        side = round((fraction * h * w) ** 0.5)
        if self.norm == "linf":
            return self._move_square(x, best, min(max(side, 1), h - 1))
        side = max(side, 3)
        return self._move_mass(x, best, min(side + (side % 2 == 0), h, w))

    def _move_square(self, x: torch.Tensor, best: torch.Tensor, side: int) -> torch.Tensor:
        """L-inf: ``best`` with one random ``side`` x ``side`` square per example set to a new
        sign per channel, redrawn (up to 10 times) where it would leave the square unchanged."""
        n, c, h, w = x.shape
        square = _window_mask(*_window(n, h, w, side, x.device), h, w)
        candidate = best
        redraw = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(10):
            moved = self._clip(torch.where(square, x + self.eps * _signs((n, c, 1, 1), x.device), best))
            candidate = torch.where(redraw.view(n, 1, 1, 1), moved, candidate)
            redraw = ((candidate - best).abs().flatten(1).amax(1) < 1e-7) & redraw
            if not redraw.any():
                break
        return candidate

    def _move_mass(self, x: torch.Tensor, best: torch.Tensor, side: int) -> torch.Tensor:
        """L2 (alg. 3): per channel, the perturbation in a first random square becomes its own
        direction plus a signed meta-square, scaled to hold the mass of both squares and the
        budget left; the second square is emptied; the whole is rescaled to norm ``eps``."""
        n, c, h, w = x.shape
        delta = best - x
        first, second = _window(n, h, w, side, x.device), _window(n, h, w, side, x.device)
        both = _window_mask(*first, h, w) | _window_mask(*second, h, w)
        mass = (delta * both).pow(2).sum((2, 3), keepdim=True)  # (n, c, 1, 1)
        room = (self.eps**2 - flat_norm(delta, 2).pow(2)).clamp_min(0)
        old = _take(delta, *first)
        new = _turned(meta_square(side, x.device), n)[:, None] * _signs((n, c, 1, 1), x.device)
        new = new + old / old.norm(dim=(2, 3), keepdim=True).add(1e-12)
        new = new / new.norm(dim=(2, 3), keepdim=True).add(1e-12) * (batch_view(room, new) / c + mass).sqrt()
        delta = delta.masked_fill(_window_mask(*second, h, w), 0.0)
        return self._on_sphere(x, _put(delta, *first, new))


def _signs(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.randint(0, 2, shape, device=device).mul(2).sub(1).float()


def _turned(pattern: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` copies of a square ``pattern``, each transposed with probability 1/2."""
    flip = torch.rand(n, device=pattern.device) < 0.5
    return torch.where(flip[:, None, None], pattern.T, pattern)


def _window(n: int, h: int, w: int, side: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``side`` x ``side`` square per example: its rows and columns, each (n, side)."""
    span = torch.arange(side, device=device)
    top = torch.randint(0, max(h - side, 1), (n, 1), device=device)
    left = torch.randint(0, max(w - side, 1), (n, 1), device=device)
    return top + span, left + span


def _window_mask(rows: torch.Tensor, cols: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(n, 1, h, w): True inside each example's square."""
    n = len(rows)
    inside_rows = torch.zeros(n, h, dtype=torch.bool, device=rows.device).scatter(1, rows, True)
    inside_cols = torch.zeros(n, w, dtype=torch.bool, device=rows.device).scatter(1, cols, True)
    return (inside_rows[:, :, None] & inside_cols[:, None, :])[:, None]


def _take(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(n, c, side, side): each example's square of ``t``."""
    every = torch.arange(len(t), device=t.device)[:, None, None]
    return t[every, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _put(t: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``t`` with each example's square replaced by ``values`` (n, c, side, side)."""
    every = torch.arange(len(t), device=t.device)[:, None, None]
    t = t.clone()
    t[every, :, rows[:, :, None], cols[:, None, :]] = values.permute(0, 2, 3, 1)
    return t
