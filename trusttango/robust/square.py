"""Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search"), L-inf: a score-based attack that needs the model's
outputs only, never its gradients. It runs on models whose gradients are unavailable (an
ONNX graph run by onnxruntime) and, in an evaluation, catches gradient masking: examples it
breaks that gradient attacks did not.
"""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import require
from trusttango.robust.base import Attack, check_logits

SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # p halves after each, on a 10,000-query scale


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The fraction of pixels a square covers at ``query`` of ``queries``: ``p_init`` halved at
    each step of :data:`SCHEDULE`, the schedule stretched to ``queries`` (as in the paper's code)."""
    scaled = int(query / queries * 10000)
    return p_init / 2 ** sum(scaled > step for step in SCHEDULE)


class Square(Attack):
    """L-inf Square Attack: random search over squares of ``+-eps`` per channel.

    The perturbation starts as vertical stripes of ``+-eps``; each query moves one random square
    (its side from :func:`square_fraction`) to a new random sign per channel and keeps the
    change where the margin (true logit minus the largest other; targeted: the largest other
    minus the target's) decreases. Examples already fooled spend no more queries. Defaults are
    AutoAttack's (``p_init`` 0.8, 5,000 queries, one restart). Random draws use torch's global
    generator (seed it for repeatable results).
    """

    def __init__(
        self,
        model: nn.Module,
        eps: float = 8 / 255,
        norm: str = "linf",
        queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        targeted: bool = False,
        bounds: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        super().__init__(model)
        self._threat(targeted, bounds)
        require(norm == "linf", f"norm: Square is implemented for linf only, got {norm!r}")
        require(eps > 0, f"eps: expected > 0, got {eps}")
        require(int(queries) >= 1 and int(restarts) >= 1, "queries, restarts: expected >= 1")
        require(0 < p_init <= 1, f"p_init: expected in (0, 1], got {p_init}")
        self.eps, self.queries, self.p_init, self.restarts = float(eps), int(queries), float(p_init), int(restarts)

    def _margin(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per example: <= 0 once adversarial (untargeted: ``z_y - max_{j != y} z_j``)."""
        with torch.no_grad():
            logits = self._net(x)
        check_logits(logits, len(x), y)
        own = logits.gather(1, y[:, None])[:, 0]
        other = logits.scatter(1, y[:, None], float("-inf")).amax(1)
        return other - own if self.targeted else own - other

    def _perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        require(x.dim() == 4 and min(x.shape[2:]) >= 2, f"x: Square needs images (N, C, H, W), got {tuple(x.shape)}")
        best = x.clone()
        margin = torch.full((len(x),), float("inf"), device=x.device)
        for _ in range(self.restarts):
            todo = (margin > 0).nonzero().flatten()
            if len(todo) == 0:
                break
            adv, found = self._search(x[todo], y[todo])
            better = found < margin[todo]
            best[todo[better]], margin[todo[better]] = adv[better], found[better]
        return best

    def _search(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One run of the random search: the best points and their margins."""
        n, c, h, w = x.shape
        stripes = self.eps * torch.randint(0, 2, (n, c, 1, w), device=x.device).mul(2).sub(1)
        best = self._clip(x + stripes)
        margin = self._margin(best, y)
        for query in range(1, self.queries):
            active = (margin > 0).nonzero().flatten()
            if len(active) == 0:
                break
            side = round((square_fraction(self.p_init, query, self.queries) * h * w) ** 0.5)
            candidate = self._move_square(x[active], best[active], min(max(side, 1), h - 1))
            found = self._margin(candidate, y[active])
            better = found < margin[active]
            best[active[better]], margin[active[better]] = candidate[better], found[better]
        return best, margin

    def _move_square(self, x: torch.Tensor, best: torch.Tensor, side: int) -> torch.Tensor:
        """``best`` with one random ``side`` x ``side`` square per example set to a new sign per
        channel, redrawn (up to 10 times) where it would leave the square unchanged."""
        n, c, h, w = x.shape
        top = torch.randint(0, h - side, (n, 1, 1, 1), device=x.device)
        left = torch.randint(0, w - side, (n, 1, 1, 1), device=x.device)
        rows, cols = (
            torch.arange(h, device=x.device).view(1, 1, h, 1),
            torch.arange(w, device=x.device).view(1, 1, 1, w),
        )
        square = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        candidate = best
        redraw = torch.ones(n, dtype=torch.bool, device=x.device)
        for _ in range(10):
            signs = self.eps * torch.randint(0, 2, (n, c, 1, 1), device=x.device).mul(2).sub(1)
            moved = self._clip(torch.where(square, x + signs, best))
            candidate = torch.where(redraw.view(n, 1, 1, 1), moved, candidate)
            redraw = ((candidate - best).abs().flatten(1).amax(1) < 1e-7) & redraw
            if not redraw.any():
                break
        return candidate
