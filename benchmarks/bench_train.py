"""Training throughput: trusttango's loop vs a minimal hand-written PyTorch loop.

Same model (default small CNN), same Fashion-MNIST data, same batch size, same optimiser,
in one process; alternating repeats, best of each. Goal: ratio ours / floor >= 0.95.

    python -m benchmarks.bench_train [--n 20000] [--repeats 3]
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import make_parser, parse, write_table
from trusttango.data import load_builtin
from trusttango.models import build_model, config_for
from trusttango.train import TrainConfig, fit


def hand_written(model, x, y, batch_size: int, lr: float) -> float:
    """The eager floor: shuffle, slice, forward, loss, backward, step. Returns seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    perm = torch.randperm(len(y))
    for i in range(0, len(y), batch_size):
        idx = perm[i : i + batch_size]
        loss = loss_fn(model(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def ours(model, train, batch_size: int, lr: float) -> float:
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=lr, schedule="constant", progress=False, device="cpu")
    start = time.perf_counter()
    fit(model, train, None, cfg)
    return time.perf_counter() - start


def parser():
    """The script's command line."""
    found = make_parser(__doc__)
    found.add_argument("--n", type=int, default=20000)
    found.add_argument("--repeats", type=int, default=3)
    found.add_argument("--batch-size", type=int, default=128)
    return found


def main() -> None:
    args = parse(parser())
    train = load_builtin("fashion-mnist").train.subset(torch.arange(args.n))
    cfg = config_for(train.input_shape, 10)
    t_ours, t_floor = [], []
    for _ in range(args.repeats):
        t_floor.append(hand_written(build_model(cfg, seed=0), train.x, train.y, args.batch_size, 2e-3))
        t_ours.append(ours(build_model(cfg, seed=0), train, args.batch_size, 2e-3))
    ips_ours, ips_floor = args.n / min(t_ours), args.n / min(t_floor)
    write_table(
        "Training throughput: one loop vs hand-written PyTorch loop",
        ["model", "images", "batch", "ours img/s", "hand-written img/s", "ratio ours/floor"],
        [["small_cnn w0.5 d3", args.n, args.batch_size, ips_ours, ips_floor, ips_ours / ips_floor]],
        f"best of {args.repeats} alternating repeats, threads={torch.get_num_threads()}",
    )
    print(f"ours {ips_ours:.0f} img/s, floor {ips_floor:.0f} img/s, ratio {ips_ours / ips_floor:.3f}")


if __name__ == "__main__":
    main()
