"""The evidence map: which figure of the audit serves which requirement of the EU's Ethics
Guidelines for Trustworthy AI (High-Level Expert Group on AI, 2019: seven requirements) and of
the AI Act (Regulation (EU) 2024/1689) for high-risk systems, with its verdict, and what a
person must still supply.

Contract: a requirement no stage measures says "supply" and names what is missing; a stage
that was skipped is evidence for nothing; a requirement's verdict is its weakest evidence's.
The map claims coverage only of what was measured: conformity needs far more than an audit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from trusttango.report.verdicts import ORDER

if TYPE_CHECKING:
    from trusttango.report.html import Section

SUPPLY = "supply"


@dataclass(frozen=True)
class Requirement:
    """One requirement: its framework and clause, the audit stages (section keys) whose figures
    are evidence for it, and what a person must supply beyond them."""

    framework: str
    clause: str
    name: str
    stages: tuple[str, ...]
    supply: str


HLEG = "HLEG 2019"
AI_ACT = "AI Act"
REQUIREMENTS = (
    Requirement(HLEG, "1", "Human agency and oversight", (),
                "who oversees the model's use and how a person can override it (AI Act Art. 14)"),
    Requirement(HLEG, "2", "Technical robustness and safety", ("evaluation", "robustness", "detection"),
                "fallback plans; resilience to data and model poisoning and to deployment errors (not tested)"),
    Requirement(HLEG, "3", "Privacy and data governance", ("privacy", "fairness"),
                "the data's provenance and lawful basis, access control to data and model"),
    Requirement(HLEG, "4", "Transparency", ("insight",),
                "how users are told they face an AI system, and its instructions for use"),
    Requirement(HLEG, "5", "Diversity, non-discrimination and fairness", ("fairness",),
                "the groups that matter for the use, stakeholder consultation, accessibility"),
    Requirement(HLEG, "6", "Societal and environmental well-being", (),
                "the system's social and environmental impact (energy, effect on people's work and health)"),
    Requirement(HLEG, "7", "Accountability", ("genesis",),
                "risk management, third-party auditability and redress (the audit's own files are dated)"),
    Requirement(AI_ACT, "Art. 10(2)(f)-(g)", "Data governance: examination of biases (class and subgroup "
                "coverage, train/deployment shift)", ("fairness",),
                "the data's provenance, collection and preparation, and its relevance to the intended purpose"),
    Requirement(AI_ACT, "Art. 13", "Transparency: explanations and their faithfulness", ("insight",),
                "the instructions for use"),
    Requirement(AI_ACT, "Art. 15(1)", "Accuracy, declared with its metric and interval", ("evaluation",),
                "the accuracy level declared in the instructions for use"),
    Requirement(AI_ACT, "Art. 15(1), 15(5)", "Robustness to adversarial examples (model evasion) and their "
                "detection", ("robustness", "detection"), "the technical measures taken against evasion"),
    Requirement(AI_ACT, "Art. 15(5)", "Cybersecurity: confidentiality attacks (privacy leakage)", ("privacy",),
                "security of the data and model in deployment"),
    Requirement(AI_ACT, "Art. 15(4)-(5)", "Resilience to errors and to data or model poisoning", (),
                "tests against faulty inputs and poisoned training data (the audit does not run them)"),
    Requirement(AI_ACT, "Art. 9", "Risk management system", (), "the risk management process and its records"),
    Requirement(AI_ACT, "Art. 12", "Record-keeping (logging)", (), "automatic logging of the system in operation"),
    Requirement(AI_ACT, "Art. 14", "Human oversight", (), "the oversight measures and who carries them out"),
    Requirement(AI_ACT, "Art. 72", "Post-market monitoring", (), "the monitoring plan for the deployed system"),
)  # fmt: skip

# Annex IV (technical documentation), section 2: the items the audit's files fill
ANNEX_IV = {
    "2(b)": "design specifications: the model's input and output (model_spec.json, model_card.json)",
    "2(g)": "validation and testing procedures and data, metrics for accuracy, robustness and discriminatory "
    "impact, with a dated test log (audit.json, index.html)",
}


def _verdict(evidence: list[dict]) -> str:
    """The weakest verdict among the evidence, or "supply" when there is none."""
    verdicts = [item["verdict"] for item in evidence if item["verdict"] in ORDER]
    return min(verdicts, key=ORDER.index) if verdicts else SUPPLY


def evidence_map(sections: list[Section]) -> list[dict]:
    """Per requirement: the audit figures that are its evidence (stage, headline, verdict), the
    requirement's verdict, and what a person must still supply."""
    by_key = {s.key: s for s in sections if not s.skipped}
    rows = []
    for req in REQUIREMENTS:
        evidence = [{"stage": key, "figure": by_key[key].headline, "verdict": by_key[key].verdict}
                    for key in req.stages if key in by_key]  # fmt: skip
        rows.append({"framework": req.framework, "clause": req.clause, "requirement": req.name,
                     "evidence": evidence, "verdict": _verdict(evidence), "supply": req.supply})  # fmt: skip
    return rows


def evidence_table(rows: list[dict]) -> tuple[str, list[str], list[list[object]]]:
    """The map as a report table."""
    body = [[f"{r['framework']} {r['clause']}", r["requirement"],
             "; ".join(f"{e['stage']}: {e['figure']}" for e in r["evidence"]) or "none measured",
             r["verdict"], r["supply"]] for r in rows]  # fmt: skip
    return "Evidence map", ["clause", "requirement", "audit evidence", "verdict", "a person must supply"], body
