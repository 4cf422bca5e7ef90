"""Occlusion (Zeiler & Fergus 2014, sec. 4.2): slide a patch, record the drop of the class score."""

from __future__ import annotations

import torch
from torch import nn

from trusttango.errors import require
from trusttango.explain._base import Attribution, Target, forward, resolve_target


def _pair(v: int | tuple[int, int], name: str) -> tuple[int, int]:
    out = (v, v) if isinstance(v, int) else tuple(v)
    require(len(out) == 2 and all(int(i) >= 1 for i in out), f"{name}: expected a positive int or (h, w), got {v!r}")
    return int(out[0]), int(out[1])


class Occlusion(Attribution):
    """Each pixel gets the mean, over the windows covering it, of ``y_c(x) - y_c(x with window := baseline)``.

    ``window`` and ``stride`` in pixels (all channels are occluded together); ``batch_size``
    occluded copies per no-grad forward pass. Same definition as Captum's ``Occlusion``.
    """

    images_only = True

    def __init__(
        self,
        model: nn.Module,
        window: int | tuple[int, int] = 4,
        stride: int | tuple[int, int] = 2,
        baseline: float = 0.0,
        batch_size: int = 256,
    ) -> None:
        super().__init__(model)
        self.window, self.stride = _pair(window, "window"), _pair(stride, "stride")
        self.baseline, self.batch_size = baseline, batch_size

    def _masks(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        (wh, ww), (sh, sw) = self.window, self.stride
        require(wh <= h and ww <= w, f"window: {self.window} is larger than the input ({h}, {w})")
        masks = []
        for top in range(0, h - wh + 1, sh):
            for left in range(0, w - ww + 1, sw):
                m = torch.zeros(h, w, dtype=torch.bool, device=device)
                m[top : top + wh, left : left + ww] = True
                masks.append(m)
        return torch.stack(masks)

    def attribute(self, inputs: torch.Tensor, target: Target = None) -> torch.Tensor:
        x = self._prepare(inputs)
        n, _, h, w = x.shape
        masks = self._masks(h, w, x.device)  # (P, H, W)
        p = masks.shape[0]
        drops = torch.empty(n, p, device=x.device)
        with torch.no_grad():
            logits = forward(self.net, x)
            t = resolve_target(target, logits)
            ref = logits.gather(1, t[:, None])
            flat_t = t.repeat_interleave(p)
            for start in range(0, n * p, self.batch_size):
                rows = torch.arange(start, min(start + self.batch_size, n * p), device=x.device)
                ex, win = rows // p, rows % p
                occluded = torch.where(masks[win][:, None], torch.as_tensor(self.baseline, dtype=x.dtype), x[ex])
                score = forward(self.net, occluded).gather(1, flat_t[rows, None])
                drops.view(-1)[rows] = (ref[ex] - score).squeeze(1)
        m = masks.to(x.dtype).flatten(1)
        total = (drops @ m).view(n, 1, h, w)
        counts = m.sum(0).clamp(min=1).view(1, 1, h, w)
        return (total / counts).expand_as(x).contiguous()
