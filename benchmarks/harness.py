"""The benchmarks' shared helpers: one command-line parser for every script (its parts and
flags; an unknown part or flag exits 2 listing the known ones), timing with a warm-up, and
appending figures to ``benchmarks/RESULTS.md`` with the date, the machine and its load."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
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


def append(title: str, header: list[str], rows: list[list[object]], notes: str = "") -> None:
    """Append one dated section: a Markdown table of ``rows`` under ``title``."""
    lines = [
        f"\n## {title}",
        f"{_dt.date.today().isoformat()} · {machine()}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    with RESULTS.open("a") as fh:
        fh.write("\n".join(lines) + "\n")


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
