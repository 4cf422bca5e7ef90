"""Two audits side by side: which verdicts and headline figures changed, and what got worse.

:func:`read_audit` accepts an ``audit.json`` (or the report folder holding it) of this
package's schema version only; :func:`diff_audits` compares per stage the verdict (ranked by
:data:`~trusttango.report.verdicts.ORDER`) and each headline figure with the direction in
which it is better. A verdict that fell is a regression; so is a stage that lost its figure.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from trusttango.errors import InputError, require
from trusttango.report.provenance import SCHEMA_VERSION
from trusttango.report.verdicts import ORDER

# headline figures: (path into audit.json's results, name, higher is better)
FIGURES = (
    (("evaluation", "accuracy"), "test accuracy", True),
    (("robustness", "robust_accuracy"), "robust accuracy", True),
    (("robustness", "ara", "ara"), "ARA", True),
    (("privacy", "membership_auc"), "membership-inference AUC", False),
    (("privacy", "tpr_at_low_fpr", "tpr"), "membership-inference TPR at low FPR", False),
    (("privacy", "empirical_epsilon", "lower"), "epsilon proven by the attacks", False),
    (("privacy", "dp", "epsilon"), "DP epsilon", False),
    (("fairness", "largest_gap", "difference"), "largest group gap", False),
    (("genesis", "alc"), "search ALC", True),
)


def read_audit(path: Path) -> dict:
    """The audit record in ``path`` (``audit.json`` or its report folder); an
    :class:`InputError` for anything else, or for another schema version."""
    path = Path(path)
    path = path / "audit.json" if path.is_dir() else path
    require(path.is_file(), f"{path}: no such audit.json")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not JSON ({err})") from None
    require(isinstance(record, dict) and record.get("schema") == "trusttango-audit" and "sections" in record,
            f"{path}: not a trusttango audit.json")  # fmt: skip
    version = record.get("schema_version")
    require(version == SCHEMA_VERSION, f"{path}: audit schema version {version}; this trusttango reads "
            f"{SCHEMA_VERSION} (audit again with it)")  # fmt: skip
    return record


def _lookup(results: dict, keys: tuple[str, ...]) -> float | None:
    value: object = results
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass
class AuditDiff:
    """Per stage: verdicts old and new; per headline figure: values old and new; and the
    regressions (verdicts that fell, figures lost or worse)."""

    verdicts: list[tuple[str, str, str]] = field(default_factory=list)  # stage, old, new
    figures: list[tuple[str, float | None, float | None, str]] = field(default_factory=list)  # name, old, new, change
    regressions: list[str] = field(default_factory=list)  # verdicts that fell
    worse: list[str] = field(default_factory=list)  # figures that got worse or were lost

    def to_dict(self) -> dict:
        return {
            "verdicts": [{"stage": s, "old": o, "new": n} for s, o, n in self.verdicts],
            "figures": [{"figure": f, "old": o, "new": n, "change": c} for f, o, n, c in self.figures],
            "regressions": self.regressions, "worse": self.worse,
        }  # fmt: skip


def _change(old: float | None, new: float | None, higher_is_better: bool) -> str:
    if old is None or new is None:
        return "same" if old is None and new is None else ("lost" if new is None else "new")
    if new == old:
        return "same"
    return "better" if (new > old) == higher_is_better else "worse"


def diff_audits(old: dict, new: dict) -> AuditDiff:
    """How ``new`` differs from ``old`` (two records from :func:`read_audit`)."""
    out = AuditDiff()
    before = {s["key"]: s["verdict"] for s in old["sections"]}
    after = {s["key"]: s["verdict"] for s in new["sections"]}
    for stage in dict.fromkeys([*before, *after]):
        was, now = before.get(stage, "n/a"), after.get(stage, "n/a")
        out.verdicts.append((stage, was, now))
        if was in ORDER and (now not in ORDER or ORDER.index(now) < ORDER.index(was)):
            out.regressions.append(f"{stage}: {was} -> {now}")
    for keys, name, higher in FIGURES:
        was, now = _lookup(old["results"], keys), _lookup(new["results"], keys)
        change = _change(was, now, higher)
        if was is not None or now is not None:
            out.figures.append((name, was, now, change))
        if change in ("worse", "lost"):
            out.worse.append(f"{name}: {was:.4g} -> " + ("none" if now is None else f"{now:.4g}"))
    return out
