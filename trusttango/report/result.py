"""What one audit found: :class:`AuditResult`, every headline figure and verdict as a typed
field, and the report it writes (``index.html``, ``audit.json``, ``model_card.json``,
``model_spec.json``, ``figures/``, ``MANIFEST.sha256``) into a folder without ever leaving it half-written."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from trusttango.errors import InputError
from trusttango.models.external import ModelSpec
from trusttango.report.card import write_model_card
from trusttango.report.html import Section, write_report
from trusttango.report.provenance import write_manifest

TITLE = "trusttango trust report"


@dataclass
class AuditResult:
    """Every figure and verdict of one audit. A figure is None where its stage did not apply
    (``skipped`` says why). ``record`` holds everything ``audit.json`` holds; ``workdir`` the
    PNGs (and a searched model) until :meth:`write` copies them into a report folder."""

    verdicts: dict[str, str]
    skipped: dict[str, str]
    spec: ModelSpec
    sections: list[Section]
    record: dict
    workdir: Path
    subtitle: str = ""
    accuracy: float | None = None
    robust_accuracy: float | None = None
    robust_eps: float | None = None
    ara: float | None = None
    detection_auc: float | None = None  # the worst over the attacks scored
    membership_auc: float | None = None  # the highest over the attacks run
    membership_tpr: float | None = None  # the strongest attack's TPR at the lowest FPR the data resolves
    proven_epsilon: float | None = None  # the epsilon lower bound the attacks prove (95 %)
    dp_epsilon: float | None = None
    fairness_gap: float | None = None  # the largest absolute gap
    alc: float | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)
    report: Path | None = None

    @classmethod
    def from_sections(cls, sections: list[Section], record: dict, spec: ModelSpec, workdir: Path, subtitle: str):
        """The result of the finished ``sections`` and their ``record`` (``record["results"]``:
        each stage's figures, as :mod:`trusttango.report.audit` writes them)."""
        results = record["results"]
        robust = results.get("robustness", {})
        privacy = results.get("privacy", {})
        detection = results.get("detection", [])
        return cls(
            verdicts={s.key: s.verdict for s in sections}, skipped={s.key: s.skipped for s in sections if s.skipped},
            spec=spec, sections=sections, record=record, workdir=workdir, subtitle=subtitle,
            accuracy=results.get("evaluation", {}).get("accuracy"), robust_accuracy=robust.get("robust_accuracy"),
            robust_eps=robust.get("eps"), ara=(robust.get("ara") or {}).get("ara"),
            detection_auc=min((d["auc"] for d in detection), default=None),
            membership_auc=privacy.get("membership_auc"),
            membership_tpr=(privacy.get("tpr_at_low_fpr") or {}).get("tpr"),
            proven_epsilon=(privacy.get("empirical_epsilon") or {}).get("lower"),
            dp_epsilon=(privacy.get("dp") or {}).get("epsilon"),
            fairness_gap=results.get("fairness", {}).get("largest_gap", {}).get("difference"),
            alc=results.get("genesis", {}).get("alc"), stage_seconds=record["stage_seconds"],
        )  # fmt: skip

    def write(self, out: Path, force: bool = False) -> Path:
        """Write the report into ``out`` (refused if it exists and is not empty, unless ``force``);
        it is built in a hidden sibling folder and moved in only when complete. Returns the
        path of ``index.html``."""
        out = Path(out)
        check_out(out, force)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-partial-", dir=out.parent))
        try:
            shutil.copytree(self.workdir, staging, dirs_exist_ok=True)
            self.spec.write(staging)
            write_report(staging, TITLE, self.subtitle, self.sections, self.record)
            write_model_card(staging, self)
            write_manifest(staging)  # last: it lists every file above
            self.report = _publish(staging, out) / "index.html"
            return self.report
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def check_out(out: Path, force: bool) -> None:
    """Refuse an existing, non-empty output folder unless ``force``."""
    if out.exists() and any(out.iterdir()) and not force:
        raise InputError(f"{out}: output folder exists and is not empty; pass --force to write into it")


def _publish(staging: Path, out: Path) -> Path:
    """Move the finished report from ``staging`` into ``out``: entries of the same name are
    replaced, other files in ``out`` stay."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        target = out / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        entry.rename(target)
    return out
