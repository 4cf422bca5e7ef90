"""Maps per second of each attribution method: trusttango vs Captum vs the eager floor.

Same model object (the default small CNN on 28x28 grey inputs), same batch, one process. The
eager floor is the minimal hand-written PyTorch computation of the same map: one forward + one
backward (gradient methods, on all scaled / noisy copies at once for IG and SmoothGrad) or
one no-grad forward over all occluded copies (occlusion). Ratios > 1 mean ours is faster.
Integrated gradients is timed twice: each library at its defaults (ours: 512 rows per pass;
Captum: all ``n * steps`` rows in one pass, cache-unfriendly on CPU) and both at 512 rows.

Two rows per method. "As a user gets it": ours at its defaults, which run the BatchNorm-folded
view of the model (an optimisation Captum's user does not get), Captum on the model as given,
and the floor on the network our side runs (the folded view). "Same computation": ours with
``fold_batchnorm = False``, so all three run the model as given. The goals (ours >= 1.0x
Captum, within 10 % of the floor) are judged in the same-computation row only.

    python -m benchmarks.bench_explain [--batch 64] [--steps 50] [--repeat 3]
"""

from __future__ import annotations

import torch
from captum import attr as ca

from benchmarks.harness import command_line, make_parser, parse, timed, write_table
from trusttango.explain import (
    Deconvolution,
    GradCAM,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Occlusion,
    Saliency,
    SmoothGrad,
)
from trusttango.models import build_model, config_for
from trusttango.models.folding import FoldedBatchNorm


def grad_floor(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    return torch.autograd.grad(model(x).gather(1, t[:, None]).sum(), x)[0]


def occlusion_floor(model, x: torch.Tensor, t: torch.Tensor, window: int, stride: int) -> torch.Tensor:
    copies = []
    for top in range(0, x.shape[2] - window + 1, stride):
        for left in range(0, x.shape[3] - window + 1, stride):
            c = x.clone()
            c[:, :, top : top + window, left : left + window] = 0
            copies.append(c)
    with torch.no_grad():
        return model(torch.cat(copies)).gather(1, t.repeat(len(copies))[:, None])


def parser():
    """The script's command line."""
    found = make_parser(__doc__)
    found.add_argument("--batch", type=int, default=64)
    found.add_argument("--steps", type=int, default=50)
    found.add_argument("--samples", type=int, default=10)
    found.add_argument("--repeat", type=int, default=3)
    found.add_argument("--notes", default="")
    return found


def main() -> None:
    args = parse(parser())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = build_model(config_for((1, 28, 28), 10), seed=0).eval().to(device)
    x = torch.rand(args.batch, 1, 28, 28, device=device)
    t = model(x).argmax(1).detach()
    n, s, k = args.batch, args.steps, args.samples
    layer = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    xs = x.repeat(s, 1, 1, 1)
    xn = x.repeat_interleave(k, 0)
    chunk = IntegratedGradients(model).batch_size  # our default rows per pass; Captum's default is all n * steps

    def one_pass(net):
        return grad_floor(net, x, t)

    cases = {
        "saliency": (Saliency(model), lambda: ca.Saliency(model).attribute(x, t), one_pass),
        "input_x_gradient": (
            InputXGradient(model), lambda: ca.InputXGradient(model).attribute(x, t), one_pass
        ),
        "integrated_gradients (defaults)": (
            IntegratedGradients(model, steps=s),
            lambda: ca.IntegratedGradients(model).attribute(x, target=t, n_steps=s),
            lambda net: grad_floor(net, xs, t.repeat(s)),
        ),
        f"integrated_gradients (both chunked {chunk})": (
            IntegratedGradients(model, steps=s, batch_size=chunk),
            lambda: ca.IntegratedGradients(model).attribute(x, target=t, n_steps=s, internal_batch_size=chunk),
            lambda net: grad_floor(net, xs, t.repeat(s)),
        ),
        "smoothgrad": (
            SmoothGrad(model, samples=k, stdev=0.1, batch_size=n * k),
            lambda: ca.NoiseTunnel(ca.Saliency(model)).attribute(x, nt_samples=k, stdevs=0.1, target=t),
            lambda net: grad_floor(net, xn, t.repeat_interleave(k)),
        ),
        "deconvnet": (Deconvolution(model), lambda: ca.Deconvolution(model).attribute(x, t), one_pass),
        "guided": (GuidedBackprop(model), lambda: ca.GuidedBackprop(model).attribute(x, t), one_pass),
        "gradcam": (
            GradCAM(model, interpolate="nearest"),
            lambda: ca.LayerAttribution.interpolate(ca.LayerGradCam(model, layer).attribute(x, t), (28, 28)),
            one_pass,
        ),
        "guided_gradcam": (
            GuidedGradCAM(model, interpolate="nearest"),
            lambda: ca.GuidedGradCam(model, layer).attribute(x, t),
            lambda net: (one_pass(net), one_pass(net)),
        ),
        "occlusion (4x4, stride 4)": (
            Occlusion(model, window=4, stride=4, batch_size=n * 49),
            lambda: ca.Occlusion(model).attribute(
                x, sliding_window_shapes=(1, 4, 4), strides=(1, 4, 4), target=t, perturbations_per_eval=49
            ),
            lambda net: occlusion_floor(net, x, t, 4, 4),
        ),
    }  # fmt: skip
    folded = FoldedBatchNorm(model)()  # the network our explainers run by default
    rows = []
    for name, (ours, captum, floor) in cases.items():
        t_captum = timed(captum, args.repeat)
        for row, fold in (("as a user gets it", True), ("same computation", False)):
            ours.fold_batchnorm = fold
            t_ours = timed(lambda o=ours: o.attribute(x, t), args.repeat)
            t_floor = timed(lambda f=floor, net=(folded if fold else model): f(net), args.repeat)
            met = "" if fold else ("met" if t_captum / t_ours >= 1.0 and t_floor / t_ours >= 0.9 else "not met")
            rows.append([name, row, n / t_ours, n / t_captum, n / t_floor, t_captum / t_ours, t_floor / t_ours, met])
            print(f"{name:28s} {row:18s} ours {n / t_ours:9.1f}  captum {n / t_captum:9.1f}  floor {n / t_floor:9.1f}")
    header = ["method", "row", "ours maps/s", "Captum maps/s", "floor maps/s", "ours / Captum", "ours / floor",
              "goals (>= 1.0x Captum, >= 0.9x floor)"]  # fmt: skip
    notes = (f"batch {n}, IG {s} steps, SmoothGrad {k} samples, best of {args.repeat} after a warm-up, device "
             f"{device}, {torch.get_num_threads()} threads; Captum always runs the model as given. "
             f"`{command_line()}`. {args.notes}")  # fmt: skip
    title = "Explanations: maps per second, trusttango vs Captum vs eager floor (as a user gets it / same computation)"
    write_table(title, header, rows, notes)


if __name__ == "__main__":
    main()
