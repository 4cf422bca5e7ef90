"""Append benchmark figures to ``benchmarks/RESULTS.md`` with the date and the machine."""

from __future__ import annotations

import datetime as _dt
import os
import platform
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
