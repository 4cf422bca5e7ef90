"""Looking inside: filter / activation grids, activation maximisation and inversion on the digits model."""

from __future__ import annotations

import pytest
import torch

from trusttango.errors import InputError
from trusttango.explain.inside import activation_grid, filter_grid, invert, maximise_activation


def test_filter_and_activation_grids(digits, digits_model, tmp_path):
    w = filter_grid(digits_model, tmp_path / "filters.png")
    assert w.shape == (16, 3, 3) and (tmp_path / "filters.png").stat().st_size > 1000
    acts = activation_grid(digits_model, "backbone.2", digits.test.x[:1], tmp_path / "acts.png")
    assert acts.shape[0] == 16 and (tmp_path / "acts.png").exists()
    with pytest.raises(InputError, match="conv layers are"):
        activation_grid(digits_model, "backbone.99", digits.test.x[:1], tmp_path / "x.png")


def test_activation_maximisation_drives_the_class(digits_model):
    for cls in (3,):
        img = maximise_activation(digits_model, (1, 8, 8), cls, steps=50, lr=0.1)
        assert img.shape == (1, 1, 8, 8) and float(img.min()) >= 0 and float(img.max()) <= 1
        with torch.no_grad():
            assert int(digits_model(img).argmax(1)) == cls
    channel = maximise_activation(digits_model, (1, 8, 8), 5, layer="backbone.12", steps=20, lr=0.1)
    grey = torch.full((1, 1, 8, 8), 0.5)
    out = {}
    hook = digits_model.backbone[12].register_forward_hook(
        lambda m, i, o: out.setdefault("a", []).append(o[:, 5].mean())
    )
    with torch.no_grad():
        digits_model(grey), digits_model(channel)
    hook.remove()
    assert float(out["a"][1]) > float(out["a"][0])


def test_inversion_recovers_the_image(digits, digits_model):
    x = digits.test.x[:4]
    rec = invert(digits_model, "backbone.5", x, steps=80, lr=0.1)
    corr = [torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1] for a, b in zip(rec, x, strict=True)]
    assert float(torch.stack(corr).mean()) > 0.5
