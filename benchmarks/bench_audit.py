"""Wall time per stage of the trust audit of a user's torchvision ResNet-18 (1-channel 28x28,
trained in plain PyTorch) beside trusttango's small CNN, at the default budget; and whether the
budget is kept (total wall time / budget) at the default and at a small budget.

Both models audited by ``trusttango.audit`` on Fashion-MNIST with the default AuditConfig
(n_attack 200, n_explain 8, n_membership 2000), members = the train split they were trained on.

    python -m benchmarks.bench_audit [--budget 600] [--small-budget 60] [--train 10000]
    python -m benchmarks.bench_audit --large 120   # only: ResNet-18 at 224x224, budget 120 s
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
import torchvision
from torch import nn

import trusttango
from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import Splits, load_builtin
from trusttango.models import build_model, config_for
from trusttango.models.external import ModelSource
from trusttango.train import TrainConfig, fit

MEAN, STD = 0.2860, 0.3530


def user_resnet(train, n: int) -> nn.Module:
    """The user's ResNet-18: grey first conv, one epoch of Adam in plain PyTorch, own normalisation."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    for i in torch.randperm(n).split(64):
        opt.zero_grad()
        nn.functional.cross_entropy(net((train.x[i] - MEAN) / STD), train.y[i]).backward()
        opt.step()
    return net.eval()


def timed_audit(model, splits: Splits, budget: float) -> tuple[float, object]:
    config = trusttango.AuditConfig(seed=0, budget=budget, members="train")
    start = time.perf_counter()
    result = trusttango.audit(model, splits, config)
    return time.perf_counter() - start, result


def large_inputs(budget: float) -> None:
    """A ResNet-18 (untrained: the run measures time and sample sizes, not accuracy) on
    Fashion-MNIST upscaled to 224x224: is the budget kept, and which sizes does it leave?"""

    def upscaled(ds, n: int):
        part = ds.subset(range(n))
        return replace(part, x=nn.functional.interpolate(part.x, size=224, mode="bilinear").clamp(0, 1))

    fmnist = load_builtin("fashion-mnist", seed=0)
    splits = Splits(upscaled(fmnist.train, 500), upscaled(fmnist.val, 100), upscaled(fmnist.test, 500))
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    wall, result = timed_audit(ModelSource(module=net.eval(), mean=[MEAN], std=[STD]), splits, budget)
    rows = [[stage, round(seconds, 1)] for stage, seconds in result.stage_seconds.items()]
    rows += [["total wall (s)", round(wall, 1)], ["wall / budget", f"{wall / budget:.2f}"]]
    rows += [[f"n {stage} {key}", value] for stage in ("evaluation", "robustness", "privacy")
             for key, value in _sizes(result.record["results"].get(stage, {})).items()]  # fmt: skip
    write_table(f"Audit of a ResNet-18 at 224x224 under a {budget:g} s budget", ["stage (seconds)", "value"], rows,
           "Untrained ResNet-18 (1-channel conv1) on 500 Fashion-MNIST test images upscaled to 224x224: the run "
           "measures whether the budget is kept and which sample sizes it leaves, not accuracy.")  # fmt: skip


def _sizes(record: dict) -> dict:
    sizes = record.get("n", {})
    return sizes if isinstance(sizes, dict) else {"examples": sizes}


def parser():
    """The script's command line."""
    found = make_parser(__doc__)
    found.add_argument("--budget", type=float, default=600.0)
    found.add_argument("--small-budget", type=float, default=60.0)
    found.add_argument("--train", type=int, default=10000)
    found.add_argument("--large", type=float, default=0.0, help="Only the 224x224 run, with this budget (s).")
    return found


def main() -> None:
    args = parse(parser())
    if args.large:
        return large_inputs(args.large)
    splits = load_builtin("fashion-mnist", seed=0)
    small = build_model(config_for(splits.train.input_shape, 10), seed=0)
    fit(small, splits.train.subset(range(args.train)), splits.val, TrainConfig(epochs=2, progress=False))
    resnet = ModelSource(module=user_resnet(splits.train, args.train), mean=[MEAN], std=[STD])
    runs = {
        "small CNN": timed_audit(small.eval(), splits, args.budget),
        "ResNet-18 28x28": timed_audit(resnet, splits, args.budget),
        f"ResNet-18, budget {args.small_budget:g}": timed_audit(resnet, splits, args.small_budget),
    }
    stages = list(next(iter(runs.values()))[1].stage_seconds)
    rows = [[stage, *(round(r.stage_seconds[stage], 1) for _, r in runs.values())] for stage in stages]
    rows.append(["total wall (s)", *(round(wall, 1) for wall, _ in runs.values())])
    budgets = [args.budget, args.budget, args.small_budget]
    rows.append(["wall / budget", *(f"{wall / b:.2f}" for (wall, _), b in zip(runs.values(), budgets, strict=True))])
    for key in ("autoattack", "curves", "ara"):
        rows.append([f"robustness n {key}", *(r.record["results"]["robustness"]["n"][key] for _, r in runs.values())])
    rows.append(["accuracy", *(f"{r.accuracy:.3f}" for _, r in runs.values())])
    rows.append(["robust accuracy", *(f"{r.robust_accuracy:.3f}" for _, r in runs.values())])
    write_table(
        "Audit wall time per stage: a user's ResNet-18 (28x28) beside the small CNN",
        ["stage (seconds)", *runs],
        rows,
        f"Fashion-MNIST, default AuditConfig (n_attack 200, n_explain 8, n_membership 2000), budget {args.budget:g} s "
        f"(and {args.small_budget:g} s); models trained on {args.train} images (ResNet-18 in plain PyTorch, 1 "
        "epoch). Sample sizes shrink only where a stage's share of the budget does not fit them. No anchor: no "
        "other tool runs this audit, so there is no side-by-side row; the process ran alone on the machine.",
    )


if __name__ == "__main__":
    main()
