"""Where an audit's figures came from, and proof its files were not edited afterwards.

:func:`provenance` records the trusttango version and git commit, sha256 digests of the model's
files (and of its parameters) and of the data exactly as the audit used it, the seed, the
thread count and the device. ``audit.json`` follows the versioned JSON Schema shipped in this
package (:data:`SCHEMA_VERSION`, :func:`audit_schema`). :func:`write_manifest` lists every file
of the report with its sha256 in ``MANIFEST.sha256``, in the format ``sha256sum -c`` checks;
:func:`verify_manifest` does the same check in Python.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from trusttango.data import Splits
    from trusttango.report.audit import AuditConfig

SCHEMA_VERSION = "1.0"
MANIFEST = "MANIFEST.sha256"


def audit_schema() -> dict:
    """The JSON Schema ``audit.json`` follows (version :data:`SCHEMA_VERSION`)."""
    return json.loads(files("trusttango.report").joinpath("schema", "audit.schema.json").read_text())


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tensors(*tensors: torch.Tensor) -> str:
    """One digest of the tensors' dtypes, shapes and bytes, in order."""
    digest = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def git_commit() -> str | None:
    """The commit of the trusttango checkout this code runs from, or None: an installed package,
    also one inside another project's repository (this file is then not tracked by it)."""
    here = Path(__file__).resolve()
    commands = (["ls-files", "--error-unmatch", here.name], ["rev-parse", "HEAD"])
    try:
        done = [subprocess.run(["git", "-C", str(here.parent), *c], capture_output=True, text=True, timeout=10)
                for c in commands]  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return done[1].stdout.strip() if all(d.returncode == 0 for d in done) else None


def _model_files(config: AuditConfig) -> dict[str, str]:
    """sha256 of every file the model was read from (an imported model's code file too)."""
    from trusttango.models.imported import code_file
    from trusttango.models.onnx import onnx_files

    paths: list[Path] = []
    if config.model is not None:
        paths += sorted(p for p in Path(config.model).rglob("*") if p.is_file())
        paths += [code] if (code := code_file(config.model)) else []
    source = config.model_source
    if source is not None:
        code = Path(source.code.split(":")[0]) if source.code else None
        paths += [Path(p) for p in (source.weights, source.class_names, code) if p]
        paths += onnx_files(Path(source.onnx)) if source.onnx else []
    return {str(p): sha256_file(p) for p in paths if p.is_file()}


def provenance(config: AuditConfig, splits: Splits, model: torch.nn.Module | None) -> dict:
    """What a reviewer needs to tie the audit's figures to one model (``None``: none was
    kept), one dataset and one run."""
    import trusttango
    from trusttango.torchutil import model_device

    state = model.state_dict() if model is not None else {}
    return {
        "trusttango": trusttango.__version__,
        "git_commit": git_commit(),
        "model_files": _model_files(config),
        "model_parameters_sha256": sha256_tensors(*state.values()) if state else None,
        "data": {name: {"n": len(part), "sha256": sha256_tensors(part.x, part.y)}
                 for name, part in (("train", splits.train), ("val", splits.val), ("test", splits.test))},
        "seed": config.seed,
        "threads": torch.get_num_threads(),
        "device": str(model_device(model)) if state else "cpu",
    }  # fmt: skip


def write_manifest(folder: Path) -> Path:
    """``folder/MANIFEST.sha256``: ``<sha256>  <path>`` for every file below ``folder``."""
    folder = Path(folder)
    entries = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    lines = [f"{sha256_file(p)}  {p.relative_to(folder).as_posix()}\n" for p in entries]
    path = folder / MANIFEST
    path.write_text("".join(lines))
    return path


def verify_manifest(folder: Path) -> list[str]:
    """What differs from ``folder``'s manifest: files changed, missing or added ([] when none)."""
    folder = Path(folder)
    listed = dict(reversed(line.split("  ", 1)) for line in (folder / MANIFEST).read_text().splitlines())
    problems = []
    for name, digest in listed.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != digest:
            problems.append(f"{name}: changed")
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    problems += [f"{name}: not in the manifest" for name in sorted(present - set(listed))]
    return problems
