"""Attribution methods: parity with Captum, backward rules on awkward ReLU usage, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from captum import attr as ca
from torch import nn

from trusttango.errors import InputError
from trusttango.explain import (
    Deconvolution,
    GradCAM,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    MeaningfulPerturbation,
    Occlusion,
    Saliency,
    SmoothGrad,
    to_heatmap,
)
from trusttango.explain.meaningful import reference


@pytest.fixture(scope="module")
def batch(digits, digits_model):
    x = digits.test.x[:16]
    with torch.no_grad():
        pred = digits_model(x).argmax(1)
    return x, pred


def close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.shape
    scale = float(theirs.detach().abs().max())
    assert scale > 0
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-4, atol=1e-5 * scale)


def test_saliency_input_x_gradient_match_captum(digits_model, batch):
    x, pred = batch
    close(Saliency(digits_model).attribute(x, pred), ca.Saliency(digits_model).attribute(x, target=pred))
    close(InputXGradient(digits_model).attribute(x, pred), ca.InputXGradient(digits_model).attribute(x, target=pred))
    # target None = predicted class
    close(Saliency(digits_model).attribute(x), ca.Saliency(digits_model).attribute(x, target=pred))


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left"])
def test_integrated_gradients_match_captum_with_internal_batching(digits_model, batch, method):
    x, pred = batch
    ig = IntegratedGradients(digits_model, steps=20, method=method, batch_size=50)
    ours = ig.attribute(x, pred)
    # Captum on the network ours runs (the BatchNorm-folded view, the same function up to float
    # rounding: tests/test_models.py): 20 gradients per map, so a rounding-level shift that
    # flips one ReLU at one interpolation step would otherwise move single pixels by ~1e-3.
    theirs = ca.IntegratedGradients(ig.net).attribute(x, target=pred, n_steps=20, method=method)
    close(ours, theirs)
    if method != "gausslegendre":
        return
    # completeness (Sundararajan eq. 1 axiom): attributions sum to y_c(x) - y_c(0)
    with torch.no_grad():
        gap = digits_model(x).gather(1, pred[:, None]) - digits_model(torch.zeros_like(x)).gather(1, pred[:, None])
    assert torch.allclose(ours.flatten(1).sum(1), gap.squeeze(1), atol=0.05 * float(gap.abs().max()))


def test_smoothgrad_matches_captum_noise_tunnel(digits_model, batch):
    x, pred = batch
    torch.manual_seed(3)
    ours = SmoothGrad(digits_model, samples=8, stdev=0.1).attribute(x, pred)
    torch.manual_seed(3)
    nt = ca.NoiseTunnel(ca.Saliency(digits_model))
    theirs = nt.attribute(x, nt_type="smoothgrad", nt_samples=8, stdevs=0.1, target=pred)
    close(ours, theirs)


@pytest.mark.parametrize(
    "ours_cls,theirs_cls", [(GuidedBackprop, ca.GuidedBackprop), (Deconvolution, ca.Deconvolution)]
)
def test_backward_rules_match_captum(digits_model, batch, ours_cls, theirs_cls):
    x, pred = batch
    ours = ours_cls(digits_model).attribute(x, pred)
    close(ours, theirs_cls(digits_model).attribute(x, target=pred))
    assert not torch.allclose(ours, Saliency(digits_model, absolute=False).attribute(x, pred))


def test_gradcam_and_guided_gradcam_match_captum(digits_model, batch):
    x, pred = batch
    layer = digits_model.backbone[10]
    cam = GradCAM(digits_model, interpolate="nearest").attribute(x, pred)
    theirs = ca.LayerGradCam(digits_model, layer).attribute(x, target=pred, relu_attributions=True)
    close(cam, ca.LayerAttribution.interpolate(theirs, x.shape[2:], interpolate_mode="nearest"))
    assert cam.shape == (16, 1, 8, 8)
    named = GradCAM(digits_model, layer="backbone.10", interpolate="nearest").attribute(x, pred)
    close(named, cam)
    ggc = GuidedGradCAM(digits_model, interpolate="nearest").attribute(x, pred)
    close(ggc, ca.GuidedGradCam(digits_model, layer).attribute(x, target=pred))


def test_occlusion_matches_captum(digits_model, batch):
    x, pred = batch
    ours = Occlusion(digits_model, window=3, stride=1, batch_size=100).attribute(x, pred)
    theirs = ca.Occlusion(digits_model).attribute(
        x, sliding_window_shapes=(1, 3, 3), strides=(1, 1, 1), target=pred, perturbations_per_eval=64
    )
    close(ours, theirs)


class Rewired(nn.Module):
    """The trained digits model with its ReLUs called in an awkward way (``kind``)."""

    def __init__(self, base: nn.Module, kind: str) -> None:
        super().__init__()
        self.base, self.kind = base, kind
        self.shared = nn.ReLU(inplace=kind == "inplace_shared")

    def act(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind in ("shared", "inplace_shared"):
            return self.shared(x)
        if self.kind == "functional":
            return F.relu(x)
        x.relu_()  # in place, return value ignored: the result must still carry the rule
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.base.preprocess(x)
        for layer in [*self.base.backbone, self.base.pool, *self.base.bottleneck]:
            x = self.act(x) if isinstance(layer, nn.ReLU) else layer(x)
        return self.base.head(x)


@pytest.mark.parametrize("kind", ["shared", "inplace_shared", "functional", "tensor_inplace"])
@pytest.mark.parametrize("method", [GuidedBackprop, Deconvolution])
def test_backward_rules_survive_reused_inplace_functional_relu(digits_model, batch, kind, method):
    x, pred = batch
    model = Rewired(digits_model, kind).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), digits_model(x))
    close(method(model).attribute(x, pred), method(digits_model).attribute(x, pred))


def test_guided_gradcam_on_rewired_model(digits_model, batch):
    x, pred = batch
    model = Rewired(digits_model, "inplace_shared").eval()
    close(GuidedGradCAM(model).attribute(x, pred), GuidedGradCAM(digits_model).attribute(x, pred))


def test_backward_rules_refuse_non_relu_models(batch):
    x, _ = batch
    gelu = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.GELU(), nn.Linear(16, 10))
    with pytest.raises(InputError, match="gelu"):
        GuidedBackprop(gelu).attribute(x)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(InputError, match="no ReLU"):
        Deconvolution(linear).attribute(x)
    hardtanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Hardtanh(), nn.Linear(16, 10))
    with pytest.raises(InputError, match="hardtanh"):
        GuidedBackprop(hardtanh).attribute(x)


@pytest.mark.parametrize("activation", [nn.ReLU6(), nn.ReLU6(inplace=True), nn.Hardtanh(0.0, 6.0)])
def test_guided_backprop_through_a_clipped_relu_masks_its_saturated_units(activation):
    """ReLU6 = min(max(h, 0), 6): guided backprop passes max(R, 0) only where 0 < h < 6.
    Hand-computed: h = W1 x = (7, 2, -1) (saturated, active, off), R = W2[c] = (1, 1, -1)."""
    first, second = nn.Linear(3, 3, bias=False), nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        first.weight.copy_(torch.diag(torch.tensor([7.0, 2.0, -1.0])))
        second.weight.copy_(torch.tensor([[1.0, 1.0, -1.0], [0.0, 0.0, 0.0]]))
    model = nn.Sequential(first, activation, second)
    x = torch.ones(1, 3)
    guided = GuidedBackprop(model).attribute(x, target=0)
    assert guided.tolist() == [[0.0, 2.0, 0.0]]  # W1^T (mask * max(R, 0)) = (7*0, 2*1, -1*0)
    deconv = Deconvolution(model).attribute(x, target=0)
    assert deconv.tolist() == [[7.0, 2.0, 0.0]]  # DeconvNet ignores the forward mask
    assert torch.equal(model(x), second(first(x).clamp(0, 6)))  # forward unchanged


def test_meaningful_perturbation_deletes_the_evidence(digits_model, batch):
    x, pred = batch
    x, pred = x[:4], pred[:4]
    # constant (mean colour) perturbation: at 8x8 the published blur (sigma 10 * H / 224) is a no-op
    heat = MeaningfulPerturbation(digits_model, steps=30, jitter=1, mask_size=4, perturbation="constant").attribute(
        x, pred
    )
    assert heat.shape == x.shape and 0 <= float(heat.min()) and float(heat.max()) <= 1
    x0 = reference(x, "constant", 0.0, 0.0)
    with torch.no_grad():
        p = lambda z: digits_model(z).softmax(1).gather(1, pred[:, None]).squeeze(1)  # noqa: E731
        p_mask = p((1 - heat) * x + heat * x0)  # delete where the mask says
        p_flip = p((1 - heat.flip(2, 3)) * x + heat.flip(2, 3) * x0)  # delete as much, elsewhere
        p_orig = p(x)
    assert float(p_mask.mean()) < float(p_orig.mean()) - 0.3
    assert float(p_mask.mean()) < float(p_flip.mean())


def test_to_heatmap_reductions():
    a = torch.tensor([[[[1.0, -3.0]], [[-2.0, 1.0]]]])  # (1, 2, 1, 2)
    assert to_heatmap(a).tolist() == [[[2.0, 3.0]]]
    assert to_heatmap(a, "sum").tolist() == [[[-1.0, -2.0]]]
    assert to_heatmap(a, "sum_abs").tolist() == [[[3.0, 4.0]]]
    assert to_heatmap(a, "positive", normalize=True).tolist() == [[[0.0, 0.0]]]
    assert to_heatmap(a, normalize=True).tolist() == [[[0.0, 1.0]]]


def test_bad_inputs_are_refused(digits_model, batch):
    x, _ = batch
    with pytest.raises(InputError, match="target"):
        Saliency(digits_model).attribute(x, target=10)
    with pytest.raises(InputError, match="backbone.10"):
        GradCAM(digits_model, layer="nope")
    with pytest.raises(InputError, match="no nn.Conv2d"):
        GradCAM(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    with pytest.raises(InputError, match="shape"):
        Saliency(digits_model).attribute(torch.rand(2, 3, 5, 5))
    with pytest.raises(InputError, match="N, C, H, W"):
        Occlusion(digits_model).attribute(x.flatten(1))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        GuidedBackprop(digits_model).attribute(bad)


def test_gradcam_works_under_no_grad(digits_model, digits):
    """Callers such as evaluate() run under torch.no_grad(); Grad-CAM must still give the same maps."""
    x = digits.test.x[:4]
    expected = GradCAM(digits_model).attribute(x)
    with torch.no_grad():
        assert torch.allclose(GradCAM(digits_model).attribute(x), expected)


def test_one_name_per_method_and_aliases_accepted():
    from trusttango.explain.compare import METHODS, methods

    found = methods(["integrated", "IG", "guided-backprop", "Grad-CAM", "saliency"])
    assert list(found) == ["integrated_gradients", "guided", "gradcam", "saliency"]
    assert found["integrated_gradients"] is METHODS["integrated_gradients"]
    with pytest.raises(InputError, match="unknown 'magic'"):
        methods(["magic"])
