"""The audit as a model card (Mitchell et al. 2019, "Model Cards for Model Reporting"):
``model_card.json`` in the Model Card Toolkit's JSON schema v0.0.2, so registries and review
tools can read the evidence without parsing the HTML, and ``MODEL_CARD.md``, the same figures
under a YAML header whose ``model-index`` model hubs display as evaluation results.

Contract: every headline figure of the audit appears once in ``quantitative_analysis`` with
the slice it was measured on (and its sample size); a proportion measured on ``n`` examples
carries its 95 % Wilson score interval; every stage that was skipped or gave no figure, and
every verdict short of "pass", is a limitation with its reason. Nothing is stated that the
audit did not measure or the user did not give.
"""

from __future__ import annotations

import base64
import json
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trusttango.report.result import AuditResult

SCHEMA_VERSION = "0.0.2"
CARD_FILE = "model_card.json"
MARKDOWN_FILE = "MODEL_CARD.md"


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n`` (Wilson 1927; 95 %
    by default), which stays inside [0, 1] and is sound at 0 or ``n`` successes."""
    if n <= 0:
        raise ValueError(f"n: expected > 0, got {n}")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _metric(kind: str, value: float, slice_: str, n: int | None = None) -> dict:
    """One performance metric; a proportion over ``n`` examples gets its Wilson interval."""
    out = {"type": kind, "value": f"{value:.4g}", "slice": slice_ if n is None else f"{slice_} (n={n})"}
    if n:
        low, high = wilson_interval(round(value * n), n)
        out["confidence_interval"] = {"lower_bound": f"{low:.4g}", "upper_bound": f"{high:.4g}"}
    return out


def _metrics(result: AuditResult) -> list[dict]:
    """The audit's headline figures, each on its slice."""
    found = result.record["results"]
    out = []
    if result.accuracy is not None:
        out.append(_metric("accuracy", result.accuracy, "test", found["evaluation"].get("n")))
    robust = found.get("robustness", {})
    if result.robust_accuracy is not None:
        attack = robust.get("attack", {})
        name = f"AutoAttack {attack.get('preset', '')}".strip() if attack.get("name") == "autoattack" else "Square"
        threat = f"test, {name} at {robust['norm']} eps {robust['eps']:g} ({robust['eps_source']})"
        out.append(_metric("robust accuracy", result.robust_accuracy, threat, sum(robust["n"].values())))
    if result.ara is not None:
        ara_n = robust.get("n", {}).get("ara")
        where = f"correctly classified test images, minimum RMS perturbation by DDN (n={ara_n})"
        out.append(_metric("adversarial robustness area (ARA)", result.ara, where))
    for row in found.get("detection", []):
        out.append(_metric("adversarial-example detection AUC", row["auc"], f"test, {row.get('attack', 'attack')}"))
    if result.membership_auc is not None:
        n = found["privacy"].get("n", {})
        sizes = f"{n.get('members', '?')} members, {n.get('nonmembers', '?')} non-members"
        out.append(_metric("membership-inference AUC", result.membership_auc, f"training vs test examples ({sizes})"))
        low = found["privacy"].get("tpr_at_low_fpr")
        if low:
            name = f"membership-inference TPR at {low['fpr']:.1%} FPR"
            out.append(_metric(name, low["tpr"], f"training examples, {low['attack']}", n.get("members")))
    if result.dp_epsilon is not None:
        out.append(_metric("differential-privacy epsilon (upper bound)", result.dp_epsilon, "training"))
    if result.fairness_gap is not None:
        metric = found["fairness"]["largest_gap"]["metric"]
        out.append(_metric(f"largest group gap ({metric})", result.fairness_gap, "test, by the declared groups"))
    if result.alc is not None:
        out.append(_metric("search area under the learning curve (ALC)", result.alc, "validation"))
    return out


def _limitations(result: AuditResult) -> list[dict]:
    """What the audit could not show: skipped stages, figures the budget did not allow, and
    every verdict short of a pass with the rule it was reached by."""
    out = [{"description": f"{key}: not audited ({why})"} for key, why in result.skipped.items()]
    for section in result.sections:
        if section.skipped:
            continue
        if section.headline.startswith("not measured"):
            out.append({"description": f"{section.key}: {section.headline}; {section.text}"})
        if section.verdict != "pass":
            out.append({"description": f"{section.key}: verdict {section.verdict} ({section.threshold})"})
    return out


def _graphics(result: AuditResult, folder: Path) -> dict:
    """The report's PNG figures, embedded as the schema asks (base64)."""
    collection = [
        {"name": f"{section.key}: {figure.caption}",
         "image": base64.b64encode((folder / "figures" / Path(figure.path).name).read_bytes()).decode("ascii")}
        for section in result.sections for figure in section.figures
        if (folder / "figures" / Path(figure.path).name).exists()
    ]  # fmt: skip
    return {"description": "The audit's figures (PNG).", "collection": collection}


def model_card(result: AuditResult, folder: Path) -> dict:
    """The model card of the audit in ``result`` whose report (figures) is in ``folder``."""
    config, spec = result.record["config"], result.spec
    versions = result.record.get("versions", {})
    source = spec.source or {}
    name = str(source.get("model") or source.get("arch") or source.get("kind") or "audited model")
    name = Path(name).name if "/" in name else name  # a folder's name, not this machine's path
    verdicts = ", ".join(f"{key} {verdict}" for key, verdict in result.verdicts.items())
    low, high = spec.value_range
    normalised = f", normalised with mean {spec.mean} and std {spec.std}" if spec.mean is not None else ""
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": name,
            "overview": f"Trust audit by trusttango {versions.get('trusttango', '')} on {config['data']}: {verdicts}.",
            "documentation": "Evidence and the rule behind each verdict: index.html and audit.json in this folder.",
            "version": {"name": f"audited {time.strftime('%Y-%m-%d')}", "date": time.strftime("%Y-%m-%d")},
            "path": name,
        },
        "model_parameters": {
            "model_architecture": ", ".join(f"{k}: {v}" for k, v in source.items()) or "not stated",
            "data": [{"name": str(config["data"]), "description": "the data the audit evaluated the model on"}],
            "input_format": f"float tensor {tuple(spec.input_shape)} per example, values in [{low:g}, {high:g}]"
            f"{normalised}",
            "output_format": f"{spec.num_classes} logits, classes {', '.join(spec.class_names)}",
        },
        "quantitative_analysis": {"performance_metrics": _metrics(result), "graphics": _graphics(result, folder)},
        "considerations": {"limitations": _limitations(result)},
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.split(" (")[0].lower()).strip("_")


def model_index(card: dict, data: str, task: str) -> list[dict]:
    """The card's figures as a model hub's ``model-index``: one result (``task`` on the test
    split of ``data``) with each figure as a metric, its slice in the name, never "verified"."""
    metrics = [
        {"type": _slug(m["type"]), "value": float(m["value"]), "name": f"{m['type']}: {m['slice']}", "verified": False}
        for m in card["quantitative_analysis"]["performance_metrics"]
    ]
    result = {"task": {"type": task, "name": task.replace("-", " ").capitalize()},
              "dataset": {"type": data, "name": data, "split": "test"}, "metrics": metrics}  # fmt: skip
    return [{"name": card["model_details"]["name"], "results": [result]}]


def model_card_markdown(card: dict, data: str, task: str) -> str:
    """``MODEL_CARD.md``: a YAML header with the ``model-index``, then the headline figures (with
    their 95 % intervals and slices), the limitations and the model's input and output."""
    import yaml

    header = yaml.safe_dump({"tags": ["trusttango", "trust-audit"], "model-index": model_index(card, data, task)},
                            sort_keys=False)  # fmt: skip
    rows = []
    for m in card["quantitative_analysis"]["performance_metrics"]:
        ci = m.get("confidence_interval")
        interval = f"{ci['lower_bound']} to {ci['upper_bound']}" if ci else "-"
        rows.append(f"| {m['type']} | {m['value']} | {interval} | {m['slice']} |")
    limits = [f"- {item['description']}" for item in card["considerations"]["limitations"]] or ["- none found"]
    params = card["model_parameters"]
    return "\n".join([
        "---", header.rstrip(), "---", "", f"# Model card: {card['model_details']['name']}", "",
        card["model_details"]["overview"], "", "## Results", "", "| figure | value | 95 % interval | measured on |",
        "|---|---|---|---|", *rows, "", "## Limitations", "", *limits, "", "## Model", "",
        f"- architecture: {params['model_architecture']}", f"- input: {params['input_format']}",
        f"- output: {params['output_format']}", "", card["model_details"]["documentation"], "",
    ])  # fmt: skip


def write_model_card(folder: Path, result: AuditResult) -> Path:
    """Write ``folder/model_card.json`` and ``folder/MODEL_CARD.md`` for the report in
    ``folder``; returns the JSON's path."""
    folder = Path(folder)
    card = model_card(result, folder)
    path = folder / CARD_FILE
    path.write_text(json.dumps(card, indent=2))
    task = "image-classification" if len(result.spec.input_shape) == 3 else "tabular-classification"
    (folder / MARKDOWN_FILE).write_text(model_card_markdown(card, str(result.record["config"]["data"]), task))
    return path
