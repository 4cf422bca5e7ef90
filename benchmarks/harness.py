"""The benchmarks' shared helpers: one command-line parser for every script (its parts and
flags; an unknown part or flag exits 2 listing the known ones), timing with a warm-up, and
writing each table into ``benchmarks/RESULTS.md`` with the date, the machine and its load."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """One line naming the machine: CPU cores or GPU, the torch version and the load average
    (other jobs on the machine slow timed runs and time-budgeted searches)."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{device}, torch {torch.__version__}, load average {load} (1 / 5 / 15 min) when written"


def write_table(title: str, header: list[str], rows: list[list[object]], notes: str = "") -> None:
    """Write one dated section, a Markdown table of ``rows`` under ``title``, into RESULTS.md: it
    replaces the section of the same title (the file holds the latest run; history is in git),
    or is added at the end."""
    lines = [
        f"## {title}",
        f"{_dt.date.today().isoformat()} · {machine()}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    section = "\n".join(lines) + "\n\n"
    head, *sections = re.split(r"(?m)^(?=## )", RESULTS.read_text() if RESULTS.exists() else "")
    found = [i for i, old in enumerate(sections) if old.splitlines()[0] == f"## {title}"]
    if found:
        sections[found[-1]] = section
    else:
        sections.append(section if not sections or sections[-1].endswith("\n\n") else "\n" + section)
    RESULTS.write_text(head + "".join(sections))


def make_parser(doc: str | None, parts: Sequence[str] = ()) -> argparse.ArgumentParser:
    """A parser described by the script's docstring; with ``parts``, a positional ``PART`` list
    (default: all of them; an unknown one exits 2 naming the choices)."""
    prog = f"python -m benchmarks.{Path(sys.argv[0]).stem}" if sys.argv and sys.argv[0] else None
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.known_parts = tuple(parts)
    if parts:
        parser.add_argument("parts", nargs="*", metavar="PART", default=list(parts),
                            help=f"what to run: any of {', '.join(parts)} (default: all)")  # fmt: skip
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; unknown parts exit 2 with the known ones."""
    args = parser.parse_args(argv)
    known = parser.known_parts
    if known and (unknown := [p for p in args.parts if p not in known]):
        parser.error(f"unknown part(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return args


def command_line() -> str:
    """How this run was started, for the notes of its table."""
    return "python -m benchmarks." + " ".join([Path(sys.argv[0]).stem, *sys.argv[1:]])


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Best of ``repeat`` timed calls of ``fn`` after one warm-up call, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass(frozen=True)
class Recipe:
    """The small Fashion-MNIST CNN of the robustness benchmarks: ``full`` uses the whole training
    set; ``epochs`` (default 8 full, 4 reduced) and the Lipschitz defence's ``target_ce``."""

    full: bool = False
    epochs: int | None = None
    target_ce: float = 0.6

    @property
    def n_train(self) -> int:
        return 55000 if self.full else 6000

    @property
    def n_epochs(self) -> int:
        return self.epochs or (8 if self.full else 4)

    def splits(self):
        """Fashion-MNIST with a stratified ``n_train`` subset of the training split."""
        from trusttango.data import load_builtin, stratified_indices

        splits = load_builtin("fashion-mnist", seed=0)
        if self.n_train < len(splits.train):
            share = self.n_train / len(splits.train)
            splits.train = splits.train.subset(stratified_indices(splits.train.y.numpy(), (share, 1 - share), 0)[0])
        return splits

    def defences(self) -> dict[str, tuple[Callable[[], list], str]]:
        """Name -> (training hooks, activation) of the standard, adversarial and Lipschitz models."""
        from trusttango.robust import AdversarialTraining, LipschitzRegulariser

        return {
            "standard": (list, "relu"),
            "adversarial (FGSM-RS eps 0.1)": (lambda: [AdversarialTraining(eps=0.1, method="fgsm")], "relu"),
            f"Lipschitz (margin, ReLU, target CE {self.target_ce})": (
                lambda: [LipschitzRegulariser(p_logit=0.0, target_ce=self.target_ce)], "relu"),
        }  # fmt: skip

    def trained(self, splits, hooks: list, activation: str = "relu"):
        """The default small CNN trained with ``hooks`` for :attr:`n_epochs`, in eval mode."""
        from trusttango.models import build_model, config_for
        from trusttango.train import TrainConfig, fit

        model = build_model(config_for(splits.train.input_shape, 10, activation=activation), seed=0)
        fit(model, splits.train, splits.val, TrainConfig(epochs=self.n_epochs, progress=False), hooks=hooks)
        return model.eval()


def recipe_parser(doc: str | None, parts: Sequence[str]) -> argparse.ArgumentParser:
    """:func:`make_parser` plus ``--full``, ``--epochs`` and ``--target-ce`` (the :class:`Recipe`
    of the robustness benchmarks; :func:`recipe_of` reads them back)."""
    parser = make_parser(doc, parts)
    parser.add_argument("--full", action="store_true", help="the whole training set and more test images")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 8 full, 4 reduced)")
    parser.add_argument("--target-ce", type=float, default=0.6, help="the Lipschitz controller's target CE")
    return parser


def recipe_of(args: argparse.Namespace) -> Recipe:
    return Recipe(args.full, args.epochs, args.target_ce)
