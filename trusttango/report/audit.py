"""``trusttango audit``: one command that gathers the evidence of every pillar into a report.

Stages (each a function ``stage(ctx) -> Section``), in order: genesis (AutoDL search, or
load the given MODEL), evaluation, insight (attribution gallery + metric table), robustness
(accuracy-vs-eps curves + ARA), detection (feature-response entropy detector ROC), privacy
(membership inference; DP guarantee if the model has one), fairness (when the data carries
group attributes). A section that does not apply says why. Budgets and sample sizes are in
:class:`AuditConfig`.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from trusttango.data import Splits, load_data
from trusttango.errors import InputError, require
from trusttango.models.external import SPEC_FILE, ModelSource, ModelSpec
from trusttango.models.io import SavedModel, load_model, save_model, versions
from trusttango.models.unified import check_compatible
from trusttango.report.budget import WEIGHTS, Budget, affordable, chunks
from trusttango.report.evidence import ANNEX_IV, evidence_map
from trusttango.report.html import Figure, Section
from trusttango.report.provenance import SCHEMA_VERSION, provenance
from trusttango.report.result import AuditResult, check_out
from trusttango.report.verdicts import (
    NOT_ESTABLISHED,
    ThreatModel,
    Verdict,
    accuracy_verdict,
    black_box_robustness_verdict,
    detection_verdict,
    graded,
    insight_verdict,
    privacy_verdict,
    robustness_verdict,
    threat_model,
)
from trusttango.schema import STRICT, validate
from trusttango.torchutil import batched_forward
from trusttango.train import resolve_device

if TYPE_CHECKING:
    from trusttango.robust import AutoAttack


@dataclass
class Thresholds:
    """What counts as trustworthy (:mod:`trusttango.report.verdicts` says how each is used)."""

    __pydantic_config__ = STRICT  # read from the audit's YAML by trusttango.schema

    accuracy: float = 0.85  # test accuracy
    robust_accuracy: float = 0.5  # accuracy under the AutoAttack ensemble at the data's stated budget
    detection_auc: float = 0.9  # detector AUC under an adaptive attack
    membership_auc: float = 0.6  # membership-inference AUC above which a leak is shown (lower is better)
    dp_epsilon: float = 10.0  # differential-privacy bound a privacy pass needs
    fairness_gap: float = 0.1  # largest demographic-parity / equalised-odds difference


@dataclass
class AuditConfig:
    """Everything ``trusttango audit`` takes; also readable from a YAML file."""

    __pydantic_config__ = {**STRICT, "arbitrary_types_allowed": True}  # (ModelSource.module: an nn.Module)

    data: str = "fashion-mnist"
    out: Path = Path("report")
    model: Path | None = None  # a trusttango model directory
    model_source: ModelSource | None = None  # or the user's own model (torchvision + weights, code, ONNX)
    budget: float = 600.0  # seconds for the whole audit; the search gets ``search_share`` of it
    search_share: float = 0.45
    sampler: str = "tpe"
    seed: int = 0
    force: bool = False
    n_explain: int = 8
    n_attack: int = 200
    n_membership: int = 2000
    device: str = "auto"  # where a model loaded from files runs: auto (CUDA when present) | cpu | cuda[:N]
    members: str = "auto"  # what the model was trained on: "train" (the data's train split) | "unknown" | "auto"
    robust_eps: float | None = None  # budget of the robustness verdict (default: the data's, with its source)
    robust_norm: str = "linf"  # linf | l2
    robust_preset: str = "standard"  # the AutoAttack preset of the verdict: standard | fast (weaker, cheaper)
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_yaml(cls, path: Path, **overrides: object) -> AuditConfig:
        """Read a YAML mapping of these fields (``thresholds`` a nested mapping); flags override."""
        import yaml

        require(path.exists(), f"{path}: audit config not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: invalid YAML ({str(err).splitlines()[0]})") from None
        require(isinstance(raw, dict), f"{path}: expected a mapping of audit options")
        cfg = validate(cls, raw, path)  # every field's type checked, an unknown option named
        return replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Context:
    """What the stages share."""

    config: AuditConfig
    splits: Splits
    figures: Path
    budget: Budget
    saved: SavedModel | None = None
    record: dict = field(default_factory=dict)
    forward_s: float = 0.0  # seconds per example of a forward pass (the evaluation stage times it)
    correct_: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))  # test rows, in order
    scanned_: int = 0  # test rows read so far by :meth:`sample`

    @property
    def model(self) -> torch.nn.Module:
        assert self.saved is not None
        return self.saved.model

    @property
    def black_box(self) -> str | None:
        """Why the model gives no gradients (an ONNX graph run by onnxruntime), or None."""
        return self.saved.meta.get("black_box") if self.saved else None

    @property
    def accurate(self) -> bool:
        """Whether the model met its accuracy threshold (the evaluation stage ran first)."""
        return self.record.get("evaluation", {}).get("accuracy", 0.0) >= self.config.thresholds.accuracy

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` test examples the model classifies correctly (attacks and maps); the
        test set is read in chunks only as far as needed, and what was read is kept for the
        next call (stages ask for samples several times)."""
        test = self.splits.test
        while len(self.correct_) < n and self.scanned_ < len(test):
            part = slice(self.scanned_, min(len(test), self.scanned_ + 512))
            keep = batched_forward(self.model, test.x[part]).argmax(1) == test.y[part]
            self.correct_ = torch.cat([self.correct_, keep.nonzero().flatten() + part.start])
            self.scanned_ = part.stop
        index = self.correct_[:n]
        require(len(index) > 0, f"the model classifies no {test.name} test example correctly; nothing to audit")
        return test.x[index], test.y[index]


def genesis(ctx: Context) -> Section:
    """AutoDL search under the budget (or the given model)."""
    cfg = ctx.config
    section = Section("genesis", "Genesis", "Is this the appropriate model, found by a systematic, repeatable process?")
    if ctx.saved is not None:
        source = cfg.model or ", ".join(f"{k} {v}" for k, v in cfg.model_source.describe().items() if v)
        section.text = f"Audited the supplied model ({source}); no search was run. Its input spec: {SPEC_FILE}."
        if ctx.black_box:
            section.text += f" Black-box mode: {ctx.black_box}; the stages that need gradients say so."
        section.skipped = "model supplied: search skipped"
        return section
    from trusttango.automl import AnytimeSearch
    from trusttango.automl.results import saved_model

    search = AnytimeSearch(ctx.splits, budget_s=cfg.budget * cfg.search_share, sampler=cfg.sampler, seed=cfg.seed)
    result = search.run()
    require(result.best is not None, "the search budget was too small to train any model; raise --budget")
    ctx.saved = saved_model(result.best, ctx.splits, {"sampler": cfg.sampler, "budget_s": search.budget_s})
    save_model(ctx.saved, ctx.figures.parent / "model")  # written with the report
    alc = result.curve.alc
    curve_png = result.curve.plot(ctx.figures / "learning_curve.png")
    section.figures.append(Figure(curve_png, "Anytime learning curve: NAUC of test predictions vs log-scaled time"))
    section.headline = f"ALC {alc:.3f} over {result.trials_run} trials"
    section.verdict = "pass" if alc > 0.5 else "warn"
    section.tables.append(("Best configuration", ["option", "value"], [[k, v] for k, v in result.best.params.items()]))
    ctx.record["genesis"] = {"alc": alc, "trials": result.trials_run, "best_params": result.best.params}
    return section


def evaluation(ctx: Context) -> Section:
    """Test accuracy, per-class precision / recall and the confusion matrix."""
    from trusttango.evaluate import evaluate, plot_confusion

    test, seconds = ctx.splits.test, ctx.budget.seconds("evaluation")
    batched_forward(ctx.model, test.x[:2])  # warm-up: the first call pays for allocation, not inference
    start = time.perf_counter()
    batched_forward(ctx.model, test.x[:32])  # a pilot: seconds per forward pass of one example
    ctx.forward_s = (time.perf_counter() - start) / min(32, len(test))
    n = affordable(seconds * 0.8, ctx.forward_s, len(test), minimum=min(len(test), 100))
    if n < len(test):  # a seeded random part of the test set, said so in the report
        test = test.subset(np.sort(np.random.default_rng(ctx.config.seed).permutation(len(test))[:n]))
    result = evaluate(ctx.model, test)
    png = plot_confusion(result, ctx.figures / "confusion.png")
    verdict = accuracy_verdict(result.accuracy, ctx.config.thresholds.accuracy)
    rows = [
        [n, p, r, s]
        for n, p, r, s in zip(result.class_names, result.precision, result.recall, result.support, strict=False)
    ]
    ctx.record["evaluation"] = {**result.to_dict(), "n": n, "n_test": len(ctx.splits.test)}
    part = "" if n == len(ctx.splits.test) else f" Evaluated on {n} of {len(ctx.splits.test)} test examples (budget)."
    return Section(
        "evaluation",
        "Performance",
        "How well does it classify unseen data?",
        headline=f"test accuracy {result.accuracy:.3f}",
        verdict=verdict.verdict,
        threshold=verdict.rule,
        text=f"Test accuracy on {n} examples.{part}",
        figures=[Figure(png, "Confusion matrix (rows: true class)")],
        tables=[("Per-class metrics", ["class", "precision", "recall", "support"], rows)],
    )


def _applicable(methods: dict, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[dict, dict]:
    """The attribution methods that run on ``model``, and why each other one does not (Grad-CAM
    needs a spatial layer; guided backprop a ReLU network): they refuse with an InputError."""
    runs, left_out = {}, {}
    for name, cls in methods.items():
        try:
            cls(model).attribute(x, target=y)
            runs[name] = cls
        except InputError as err:
            left_out[name] = str(err)
    return runs, left_out


def _gallery(ctx: Context, x: torch.Tensor, y: torch.Tensor, methods: dict) -> list[Figure]:
    """Overlays of every method's map on up to 3 of the images ``x`` (PNG figures)."""
    from trusttango.explain import to_heatmap
    from trusttango.explain.figures import save_overlays

    maps = {name: to_heatmap(cls(ctx.model).attribute(x, target=y)) for name, cls in methods.items()}
    figures = []
    for i in range(min(3, len(x))):
        name, path = ctx.splits.class_names[int(y[i])], ctx.figures / f"explain_{i}.png"
        save_overlays(x[i], {k: m[i] for k, m in maps.items()}, path, f"true and explained class: {name}")
        figures.append(Figure(path, f"Attributions for a test image of class {name}"))
    return figures


def _quality_rows(ctx: Context, x: torch.Tensor, y: torch.Tensor, methods: dict, seconds: float, maps_s: float):
    """The explanation-quality table on as many of ``x`` as fit in ``seconds`` (one image first,
    as a pilot timing), and that number; ``(None, 1)`` when even one image's table would not fit,
    judged from ``maps_s``, the seconds one image's maps took (its table takes about 6 times as long)."""
    from trusttango.explain import compare_methods

    if 6 * maps_s > seconds:
        return None, 1
    start = time.perf_counter()
    rows = compare_methods(ctx.model, x[:1], y[:1], methods=methods, sanity=not ctx.black_box)
    per_example = time.perf_counter() - start
    n = affordable(seconds - per_example, per_example, len(x), minimum=1)
    if n > 1:
        rows = compare_methods(ctx.model, x[:n], y[:n], methods=methods, sanity=not ctx.black_box)
    return rows, n


def insight(ctx: Context) -> Section:
    """Attribution gallery and the explanation-quality table."""
    from trusttango.explain import (
        GradCAM,
        GuidedBackprop,
        IntegratedGradients,
        Occlusion,
        Saliency,
    )  # fmt: skip

    seconds, start = ctx.budget.seconds("insight"), time.perf_counter()
    x, y = ctx.sample(ctx.config.n_explain)
    methods = {"saliency": Saliency, "gradcam": GradCAM, "integrated_gradients": IntegratedGradients,
               "guided": GuidedBackprop}  # fmt: skip
    if ctx.black_box:  # occlusion needs outputs only
        methods, left_out = {"occlusion": Occlusion}, {"gradient maps": "a black box gives no gradients"}
    else:
        methods, left_out = _applicable(methods, ctx.model, x[:1], y[:1])
    maps_s = time.perf_counter() - start
    rows, n = _quality_rows(ctx, x, y, methods, seconds - maps_s, maps_s)
    x, y = x[:n], y[:n]
    note = " ".join([f"Maps of {n} correctly classified test images.", *(f"{k} left out: {why}." for k, why in
                                                                          left_out.items())])  # fmt: skip
    section = Section("insight", "Insight", "Why does it decide as it does, and which explanation is faithful?",
                      text=note, figures=_gallery(ctx, x, y, methods))  # fmt: skip
    if rows is None:
        verdict = insight_verdict(None, ctx.accurate, "it did not fit in the budget")
        section.headline, section.verdict, section.threshold = "maps only", verdict.verdict, verdict.rule
        section.text += " The quality table and the sanity check did not fit in the budget."
        return section
    best = min(rows, key=lambda r: r["deletion_game_area"])
    verdict = insight_verdict(best.get("sanity_spearman"), ctx.accurate)
    section.headline = f"most faithful: {best['method']} (deletion-game area {best['deletion_game_area']:.3f})"
    section.verdict, section.threshold = verdict.verdict, verdict.rule
    section.tables.append(("Explanation quality (smaller deletion area is better)", list(rows[0]),
                           [list(r.values()) for r in rows]))  # fmt: skip
    ctx.record["insight"] = rows
    return section


def ensemble_robust_accuracy(ctx: Context, attack: AutoAttack, deadline: float) -> tuple[float, int, dict]:
    """Robust accuracy under the ensemble ``attack`` on up to ``n_attack`` test examples: correct
    before and after it. The correctly classified ones are attacked in chunks until ``deadline``;
    the figure covers the test examples up to the last one attacked. Returns it, that number of
    examples and the record: the per-attack table (robust accuracy after each, over those
    examples) and the flags."""
    from trusttango.robust import EnsembleReport
    from trusttango.robust.base import OutOfTime

    test = ctx.splits.test
    n = min(ctx.config.n_attack, len(test))
    index = (batched_forward(ctx.model, test.x[:n]).argmax(1) == test.y[:n]).nonzero().flatten()
    parts, attacked, attack.deadline = [], 0, deadline
    try:
        for part in chunks(len(index), 50, deadline, first=2):
            rows = index[part]
            parts.append(attack.evaluate(test.x[rows], test.y[rows]))
            attacked = part.stop
    except OutOfTime:  # the unfinished part is dropped: a partial ensemble would overstate robustness
        pass
    used = n if attacked == len(index) else int(index[attacked - 1]) + 1 if attacked else 0
    if not parts:
        return 0.0, used, {"name": "autoattack", "preset": attack.preset, "rows": [], "flags": []}
    report = EnsembleReport.merge(parts)
    left, rows = report.n, []
    for row in report.rows:
        left -= row.broken
        rows.append({**vars(row), "robust_accuracy": left / used})
    robust = int(report.robust.sum()) / used
    return robust, used, {"name": "autoattack", "preset": attack.preset, "rows": rows, "flags": report.flags}


def _ensemble_table(record: dict) -> tuple[str, list[str], list[list]]:
    rows = [[r["attack"], r["attacked"], r["broken"], r["robust_accuracy"]] for r in record["rows"]]
    return "AutoAttack, per attack (each on the examples no earlier one broke)", [
        "attack", "attacked", "broken", "robust accuracy after"], rows  # fmt: skip


def robustness(ctx: Context) -> Section:
    """Robust accuracy under the AutoAttack ensemble at the data's stated budget (the verdict),
    accuracy under PGD vs epsilon (L-inf and L2) and the ARA score, sized to the stage's share of
    the budget."""
    from trusttango.robust import AutoAttack

    if ctx.black_box:
        return black_box_robustness(ctx)
    seconds, now = ctx.budget.seconds("robustness"), time.perf_counter()
    end, strong_end = now + seconds, now + 0.55 * seconds  # after the verdict's attack: curves and ARA
    threat = threat_model(ctx.config.data, ctx.config.robust_eps, ctx.config.robust_norm)
    attack = AutoAttack(ctx.model, eps=threat.eps, norm=threat.norm, preset=ctx.config.robust_preset)
    step = _pgd_step_seconds(ctx, threat, seconds)
    estimate = step * 10  # the least an image costs: broken within 10 APGD-CE steps
    if 10 * estimate > strong_end - time.perf_counter():  # fewer than 10 images: no figure a reviewer can use
        return _unaffordable(ctx, threat, estimate, strong_end - now)
    started = time.perf_counter()
    robust, n_strong, ensemble = ensemble_robust_accuracy(ctx, attack, strong_end)
    if n_strong == 0:  # not even the first 2 images finished: at least half the time spent per image
        return _unaffordable(ctx, threat, max(estimate, (time.perf_counter() - started) / 2), strong_end - now)
    name = f"AutoAttack ({attack.preset}: APGD-CE, APGD-T, FAB-T, Square; Croce & Hein 2020)"
    verdict = robustness_verdict(robust, threat, ctx.config.thresholds.robust_accuracy, ctx.accurate, name)
    flags = "".join(f" Flag: {flag}." for flag in ensemble["flags"])
    section = Section(
        "robustness", "Robustness", "Can it be fooled by small, deliberate changes to its input?",
        headline=f"robust accuracy {robust:.3f} at {threat.norm} eps {threat.eps:.4g}",
        verdict=verdict.verdict, threshold=verdict.rule,
        text=f"The verdict: test accuracy under {name} at the stated budget, on {n_strong} test images; per "
        f"example the first attack that succeeds counts.{flags}",
        tables=[_ensemble_table(ensemble)],
    )  # fmt: skip
    ctx.record["robustness"] = {
        "robust_accuracy": robust, "eps": threat.eps, "norm": threat.norm, "eps_source": threat.source,
        "attack": ensemble, "n": {"autoattack": n_strong},
    }  # fmt: skip
    _curves_and_ara(ctx, section, end, step)
    return section


def _pgd_step_seconds(ctx: Context, threat: ThreatModel, seconds: float) -> float:
    """Seconds per image of one more PGD step on a batch of correct test images (up to 50, the
    attack's chunk size, as many as keep this pilot within 5 % of ``seconds``): the time of 3
    steps minus that of 1, halved, so fixed per-call costs (and warm-up) are not counted."""
    from trusttango.robust import make_attack

    fit = int(0.05 * seconds / max(15 * ctx.forward_s, 1e-9))  # 5 steps of forward + backward (~3 forwards)
    x, y = ctx.sample(max(2, min(50, ctx.config.n_attack, fit)))
    times = {}
    for steps in (1, 1, 3):
        attack = make_attack("pgd", ctx.model, eps=threat.eps, norm=threat.norm, steps=steps, restarts=1)
        start = time.perf_counter()
        attack(x, y)
        times[steps] = time.perf_counter() - start
    return max(times[3] - times[1], 0.0) / 2 / len(x)


def _unaffordable(ctx: Context, threat: ThreatModel, estimate: float, seconds: float, attack: str = "autoattack"):
    """The section when not even 10 images of the verdict's ``attack`` fit in the budget (or not
    one part of it finished): no figure, the time it would need, and the budget to ask for."""
    needed = 10 * estimate / 0.55 * sum(WEIGHTS.values()) / WEIGHTS["robustness"]
    ctx.record["robustness"] = {"robust_accuracy": None, "eps": threat.eps, "norm": threat.norm,
                                "eps_source": threat.source, "n": {attack: 0}}  # fmt: skip
    verdict = robustness_verdict(0.0, threat, ctx.config.thresholds.robust_accuracy, ctx.accurate)
    if ctx.accurate:  # no figure, so no grade
        verdict = Verdict(NOT_ESTABLISHED, f"{verdict.rule}: not run (budget)")
    name = {"autoattack": "AutoAttack", "square": "The Square attack"}[attack]
    return Section(
        "robustness", "Robustness", "Can it be fooled by small, deliberate changes to its input?",
        headline="not measured (budget)", verdict=verdict.verdict, threshold=verdict.rule,
        text=f"{name} takes at least {estimate:.2g} s per image on this model and machine (an image that resists "
        f"takes the longest); this stage had {seconds:.0f} s, less than 10 images need. Audit with --budget "
        f"{needed:.0f} or more for a figure.",
    )  # fmt: skip


def _curves_and_ara(ctx: Context, section: Section, end: float, step: float) -> None:
    """PGD-10 accuracy-vs-eps curves and ARA (DDN) on as many correct test images as fit before
    ``end`` (costs from the measured seconds per image of one attack ``step``); a part for which
    not even 5 images fit is not run, and the section says so."""
    from trusttango.robust import MinNormL2, ara, robustness_curve
    from trusttango.robust.plots import plot_ara, plot_curves

    record, sizes = ctx.record["robustness"], ctx.record["robustness"]["n"]
    # PGD-10 x 4 budgets x 2 norms: 80 steps per image; DDN-100: 100
    sizes["curves"] = affordable(0.6 * (end - time.perf_counter()), 80 * step, ctx.config.n_attack, 0)
    if sizes["curves"] < 5:
        section.text += " The accuracy-vs-eps curves and ARA were not run: the budget left no time for 5 images."
        return
    x, y = ctx.sample(sizes["curves"])
    grid = {"linf": [0.0, 0.01, 0.02, 0.05, 0.1], "l2": [0.0, 0.25, 0.5, 1.0, 2.0]}
    curves = [robustness_curve(ctx.model, x, y, eps, norm=norm, steps=10, restarts=1) for norm, eps in grid.items()]
    record["curves"], sizes["curves"] = [c.to_dict() for c in curves], len(x)
    section.figures.append(Figure(plot_curves(curves, ctx.figures / "robustness_curves.png"),
                                  "Accuracy vs attack budget (PGD-10, correctly classified images)"))  # fmt: skip
    rows = [[c.norm, e, a] for c in curves for e, a in zip(c.eps, c.accuracy, strict=False)]
    section.tables.append(("Accuracy under PGD-10", ["norm", "eps", "accuracy"], rows))
    section.text += f" The curves: PGD-10 on {len(x)} correctly classified test images."
    sizes["ara"] = min(len(x), affordable(end - time.perf_counter(), 100 * step, ctx.config.n_attack // 2, 0))
    if sizes["ara"] < 5:
        section.text += " ARA was not run: the budget left no time for 5 images."
        return
    result = ara(ctx.model, x[: sizes["ara"]], y[: sizes["ara"]], MinNormL2(ctx.model))
    record["ara"] = result.to_dict()
    section.figures.append(Figure(plot_ara({"model": result}, ctx.figures / "ara.png"),
                                  "Accuracy vs minimum RMS perturbation"))  # fmt: skip
    section.headline += f"; ARA {result.ara:.4f}"
    section.text += (f" ARA integrates the accuracy above chance over the minimum RMS perturbation (Woods et al. "
                     f"2019), over {sizes['ara']} correctly classified test images only: it describes how far the "
                     "model's right answers are from a wrong one, not its accuracy.")  # fmt: skip


def black_box_robustness(ctx: Context) -> Section:
    """A model without gradients: robust accuracy under the score-based Square attack alone
    (5,000 queries) at the stated budget, in chunks until the stage's share of the budget ends."""
    from trusttango.robust import AutoAttack

    threat = threat_model(ctx.config.data, ctx.config.robust_eps, ctx.config.robust_norm)
    start = time.perf_counter()
    seconds = ctx.budget.seconds("robustness")
    attack = AutoAttack(ctx.model, eps=threat.eps, norm=threat.norm, preset="square")
    robust, n, ensemble = ensemble_robust_accuracy(ctx, attack, start + seconds)
    if n == 0:
        return _unaffordable(ctx, threat, (time.perf_counter() - start) / 2, seconds, "square")
    verdict = black_box_robustness_verdict(robust, threat, ctx.config.thresholds.robust_accuracy, ctx.accurate)
    ctx.record["robustness"] = {"robust_accuracy": robust, "eps": threat.eps, "norm": threat.norm,
                                "eps_source": threat.source, "attack": {**ensemble, "name": "square"},
                                "n": {"square": n}}  # fmt: skip
    flags = "".join(f" Flag: {flag}." for flag in ensemble["flags"])
    return Section(
        "robustness", "Robustness", "Can it be fooled by small, deliberate changes to its input?",
        headline=f"robust accuracy {robust:.3f} at {threat.norm} eps {threat.eps:.4g} (Square, black box)",
        verdict=verdict.verdict, threshold=verdict.rule,
        text=f"Black-box mode ({ctx.black_box}): test accuracy under the Square attack (Andriushchenko et al. "
        f"2020) on {n} test images. Gradient attacks, the accuracy-vs-eps curves and ARA need gradients and were "
        f"not run; a score-based attack alone gives an upper bound on robust accuracy.{flags}",
    )  # fmt: skip


def detection(ctx: Context) -> Section:
    """Entropy detector fitted on FGSM, evaluated on FGSM and on unseen PGD."""
    from trusttango.detect import EntropyDetector, adversarial_pairs, detection_roc, evaluate_detector
    from trusttango.plotting import plot_roc
    from trusttango.robust import FGSM, PGD

    if ctx.black_box:
        why = f"the entropy detector reads guided-backprop feature responses, which need gradients ({ctx.black_box})"
        return Section("detection", "Attack detection", "Would we notice an adversarial input?", skipped=why)
    seconds, start = ctx.budget.seconds("detection"), time.perf_counter()
    x, y = ctx.sample(4)
    try:  # the feature response is guided backprop, defined for ReLU networks only; a pilot timing
        EntropyDetector(ctx.model).statistics(x)
    except InputError as err:
        return Section("detection", "Attack detection", "Would we notice an adversarial input?", skipped=str(err))
    per_example = 3 * (time.perf_counter() - start) / len(x) + 40 * ctx.forward_s  # statistics x 3, FGSM, PGD-10
    n = affordable(seconds - (time.perf_counter() - start), per_example, ctx.config.n_attack, minimum=0)
    if n < 10:  # 5 to fit the detector on, 5 to score it on: below that no figure means anything
        why = f"the budget left time for {n} images, fewer than the 10 the detector needs to be fitted and scored"
        return Section("detection", "Attack detection", "Would we notice an adversarial input?", skipped=why)
    x, y = ctx.sample(n)
    half = len(x) // 2
    fit_clean, fit_adv = adversarial_pairs(ctx.model, x[:half], y[:half], FGSM(ctx.model, eps=0.1))
    detector = EntropyDetector(ctx.model).fit(fit_clean, fit_adv)
    results, curves, unflipped = [], {}, []
    for name, attack in {
        "FGSM (seen)": FGSM(ctx.model, eps=0.1),
        "PGD (unseen)": PGD(ctx.model, eps=0.1, steps=10, restarts=1),
    }.items():
        clean, adv = adversarial_pairs(ctx.model, x[half:], y[half:], attack)
        if len(adv) == 0:  # a model this attack cannot fool leaves nothing to detect
            unflipped.append(name)
            continue
        results.append(evaluate_detector(detector, clean, adv, name))
        curves[name] = detection_roc(detector.score(clean), detector.score(adv))
    if not results:
        reason = f"{' and '.join(unflipped)} flipped none of the {len(x) - half} held-out inputs: nothing to detect"
        return Section("detection", "Attack detection", "Would we notice an adversarial input?", skipped=reason)
    png = plot_roc(curves, ctx.figures / "detector_roc.png", "feature-response entropy detector")
    verdict = detection_verdict(adaptive=False)
    ctx.record["detection"] = [r.to_dict() for r in results]
    rows = [[r.attack, r.auc, r.precision, r.recall, r.fpr_at_95_recall] for r in results]
    worst = min(results, key=lambda r: r.auc)
    note = f" {' and '.join(unflipped)} flipped no held-out input, so it is not scored." if unflipped else ""
    return Section(
        "detection",
        "Attack detection",
        "Would we notice an adversarial input?",
        headline=f"AUC {worst.auc:.3f} on {worst.attack}",
        verdict=verdict.verdict,
        threshold=verdict.rule,
        text=f"Fitted on FGSM ({half} images), then scored on {len(x) - half} held-out images under FGSM and PGD, an "
        f"attack it never saw; neither knows the detector, so these AUCs are upper bounds on what it catches.{note}",
        figures=[Figure(png, "ROC of the local-spatial-entropy detector (fitted on FGSM)")],
        tables=[("Detection", ["attack", "AUC", "precision", "recall", "FPR at 95% recall"], rows)],
    )


def _no_members(ctx: Context) -> str | None:
    """Why membership cannot be tested (None: it can). ``members="auto"`` trusts the train
    split only for a trusttango model (which was trained on it); a brought model (its config a
    :class:`ModelSpec`) must say so, here or when it was imported (``import-model --members``)."""
    members = ctx.config.members
    if members == "auto":
        brought = isinstance(ctx.saved.config, ModelSpec)
        members = ctx.saved.meta.get("members", "unknown") if brought else "train"
    if len(ctx.splits.train) == 0:
        return "membership inference needs the model's training data (members); give Splits with its train split"
    if members == "unknown":
        return (
            "membership inference needs to know which examples the model was trained on; if it was trained on "
            "the train split of this data, say so (--members train); nothing is guessed"
        )
    return None


MAX_REFERENCE_MODELS = 8  # RMIA's few-model regime (Zarifzadeh et al. 2024 use 1 to 4 offline)


def _reference_attacks(ctx: Context, found, deadline: float) -> tuple[list, str]:
    """RMIA and LiRA (offline) with as many reference models as the privacy share allows, at
    most ``MAX_REFERENCE_MODELS``; each is estimated at the model's recorded training time scaled
    to half the population. Returns the results and a sentence saying what ran and why."""
    from trusttango.privacy.audits import ReferenceModels, lira_attack, rmia_attack
    from trusttango.privacy.audits.recipe import saved_recipe

    try:
        recipe = saved_recipe(ctx.saved)
    except InputError:
        return [], ("RMIA and LiRA were not run: they train reference models the way the model was trained, "
                    "and this model records no training settings (a trusttango model does)")  # fmt: skip
    records = ctx.saved.meta.get("history", {}).get("records") or [{}]
    trained_s = float(records[-1].get("time_s", 0.0))
    per_model = trained_s * (len(found.population) / 2) / max(1, len(ctx.splits.train))
    wanted = affordable(deadline - time.perf_counter(), per_model, MAX_REFERENCE_MODELS, minimum=0)
    if wanted == 0:
        return [], (f"RMIA and LiRA were not run: one reference model (about {per_model:.0f} s) does not fit in "
                    "the privacy share of --budget")  # fmt: skip
    refs = ReferenceModels(recipe.make_model, recipe.train_config, wanted, False, recipe.hooks, recipe.shift,
                           recipe.flip, ctx.config.seed)  # fmt: skip
    refs.fit(found.members, found.nonmembers, found.population, deadline=deadline)
    results = [rmia_attack(ctx.model, found.members, found.nonmembers, refs)] if refs.n_models_ >= 1 else []
    if refs.n_models_ >= 2:
        results.append(lira_attack(ctx.model, found.members, found.nonmembers, refs, online=False))
    note = (f"{refs.n_models_} reference models (offline, as many as the privacy share of --budget allowed, at "
            f"most {MAX_REFERENCE_MODELS}), each trained like the model on half of {len(found.population)} held-out "
            f"examples (the model on {len(ctx.splits.train)}): {'; '.join(recipe.notes)}")  # fmt: skip
    return results, note


def _lowest_fpr(n_nonmembers: int) -> float:
    """The lowest of the reported FPRs the non-members resolve (at least one false positive)."""
    from trusttango.privacy.audits.membership import LOW_FPRS

    return next((f for f in LOW_FPRS if f * n_nonmembers >= 1), LOW_FPRS[-1])


def privacy(ctx: Context) -> Section:
    """Membership inference at low FPR (RMIA, LiRA, loss threshold on the same examples) and the
    epsilon the strongest proves, beside any DP guarantee."""
    from trusttango.privacy.audits import empirical_epsilon, plot_roc
    from trusttango.privacy.audits.membership import loss_threshold_attack
    from trusttango.privacy.audits.membership_audit import candidates

    if (why := _no_members(ctx)) is not None:
        return Section("privacy", "Privacy", "Does the model leak who was in its training data?", skipped=why)
    deadline = time.perf_counter() + ctx.budget.seconds("privacy")
    n = affordable(ctx.budget.seconds("privacy"), 2 * ctx.forward_s, ctx.config.n_membership, minimum=100)
    found = candidates(ctx.splits.train, ctx.splits.test, n, seed=ctx.config.seed)
    loss = loss_threshold_attack(ctx.model, found.members, found.nonmembers)
    attacks, note = _reference_attacks(ctx, found, deadline)
    results = [*attacks, loss]
    fpr = _lowest_fpr(len(found.nonmembers))
    top = max(results, key=lambda r: (r.tpr_at(fpr), r.auc))
    guarantee = ctx.saved.meta.get("privacy") if ctx.saved else None
    delta = guarantee["delta"] if guarantee else 1e-5
    bound = max((empirical_epsilon(r, delta) for r in results), key=lambda b: b.lower)
    t = ctx.config.thresholds
    verdict = privacy_verdict(max(r.auc for r in results), t.membership_auc,
                              guarantee["epsilon"] if guarantee else None, t.dp_epsilon, ctx.accurate,
                              bound.lower)  # fmt: skip
    png = plot_roc(results, ctx.figures / "membership_roc.png", log=True)
    ctx.record["privacy"] = {
        "membership_auc": max(r.auc for r in results),
        "advantage": loss.advantage,
        "tpr_at_low_fpr": {"fpr": fpr, "tpr": top.tpr_at(fpr), "attack": top.method},
        "attacks": [r.summary() for r in results],
        "reference_note": note,
        "empirical_epsilon": {
            "lower": bound.lower,
            "delta": delta,
            "attack": bound.method,
            "confidence": bound.confidence,
        },  # fmt: skip
        "dp": guarantee,
        "n": {"members": len(found.members), "nonmembers": len(found.nonmembers), "population": len(found.population)},
    }
    return Section(
        "privacy",
        "Privacy",
        "Does the model leak who was in its training data?",
        headline=f"TPR {top.tpr_at(fpr):.3f} at {fpr:.1%} FPR ({top.method})",
        verdict=verdict.verdict,
        threshold=verdict.rule,
        text=_privacy_text(results, found, note, bound, guarantee),
        figures=[
            Figure(
                png,
                "Membership-inference ROC on log-log axes: RMIA, LiRA and the loss threshold on the "
                "same members and non-members (the low-FPR view of Carlini et al. 2022)",
            )
        ],
    )


def _privacy_text(results, found, note: str, bound, guarantee: dict | None) -> str:
    attacks = " ".join(f"{r.interpretation()}." for r in results)
    sizes = (f"{len(found.members)} members (train split), {len(found.nonmembers)} non-members and a population of "
             f"{len(found.population)} (test split)")  # fmt: skip
    if guarantee:
        claim = f"Trained with DP-SGD: (epsilon {guarantee['epsilon']:.2f}, delta {guarantee['delta']:g}). "
        claim += bound.against(guarantee["epsilon"])
    else:
        claim = ("Not trained with differential privacy (train with `trusttango train --dp` for a guarantee); the "
                 f"attacks prove epsilon >= {bound.lower:.2f} at delta {bound.delta:g} ({bound.confidence:.0%} "
                 "confidence).")  # fmt: skip
    return f"{attacks} On {sizes}. {note}. {claim}"


def fairness(ctx: Context) -> Section:
    """Subgroup gaps when the test data carries group attributes."""
    section = Section("fairness", "Fairness", "Does it treat groups alike?")
    test = ctx.splits.test
    if not test.extra:
        section.skipped = (
            f"{test.name} has no group attributes (e.g. sex, race); audit a probe set or a table with them"
        )
        return section
    from trusttango.fairness.subgroups import model_subgroups

    report = model_subgroups(ctx.model, test)
    worst_name, worst = max(
        ((k, g) for k, g in report.gaps.items() if k != "accuracy"), key=lambda kv: abs(kv[1].difference)
    )
    t = ctx.config.thresholds.fairness_gap
    frame = report.frame().reset_index()
    ctx.record["fairness"] = {
        **report.to_dict(),
        "largest_gap": {"metric": worst_name, "difference": float(worst.difference)},
    }
    section.headline = f"largest gap: {worst_name} {worst.difference:.3f}"
    section.verdict = graded(abs(worst.difference), t, higher_is_better=False)
    section.threshold = f"largest gap <= {t:g} (the user's threshold)"
    section.tables.append(("Per-group metrics", list(frame.columns), frame.values.tolist()))
    return section


STAGES: list[tuple[str, Callable[[Context], Section]]] = [
    ("genesis", genesis),
    ("evaluation", evaluation),
    ("insight", insight),
    ("robustness", robustness),
    ("detection", detection),
    ("privacy", privacy),
    ("fairness", fairness),
]


def _seed_stage(seed: int, index: int) -> None:
    """Seed every RNG a stage may use, per stage, so one stage's figures do not depend on another's draws."""
    random.seed(seed + index)
    np.random.seed(seed + index)
    torch.manual_seed(seed + index)


def _run_stages(ctx: Context, progress: bool) -> list[Section]:
    """Every stage in order, seeded per stage, with a progress bar."""
    sections = []
    columns = [TextColumn("[bold]audit"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("", total=len(STAGES))
        for index, (name, stage) in enumerate(STAGES):
            _seed_stage(ctx.config.seed, index)
            left = max(0.0, ctx.budget.left())
            bar.update(task, description=f"{name} (budget left {left:.0f} s)")
            start = time.perf_counter()
            section = stage(ctx)
            section.seconds = time.perf_counter() - start
            sections.append(section)
            bar.advance(task)
    return sections


def supplied_model(config: AuditConfig, splits: Splits) -> SavedModel | None:
    """The model to audit, checked against the data: a trusttango directory, the user's own
    model (see :class:`~trusttango.models.external.ModelSource`), or None (search for one)."""
    require(
        config.model is None or config.model_source is None,
        "give a MODEL directory or the user's model (--arch, --model-code, --onnx), not both",
    )
    if config.model is None and config.model_source is None:
        return None
    device = resolve_device(config.device)
    if config.model_source is not None:
        saved = config.model_source.load(splits.test)
    else:
        saved = load_model(config.model)
        check_compatible(saved.config, splits.train)
    saved.model.to(device)
    return saved


def model_spec(ctx: Context) -> ModelSpec:
    """The audited model's input spec (a trusttango model takes [0, 1] and normalises inside)."""
    if isinstance(ctx.saved.config, ModelSpec):
        return ctx.saved.config
    source = {"kind": "trusttango", "model": str(ctx.config.model or "searched: model/"), "normalisation": "inside"}
    test = ctx.splits.test
    return ModelSpec.checked(
        input_shape=tuple(test.input_shape), num_classes=test.num_classes, class_names=ctx.saved.class_names,
        source=source,
    )  # fmt: skip


def check_config(config: AuditConfig) -> None:
    """Refuse a bad budget or option before any long work."""
    require(config.budget > 0, f"budget must be > 0 seconds, got {config.budget}")
    members = config.members
    require(members in ("auto", "train", "unknown"), f"members: expected auto, train or unknown, got {members!r}")
    threat_model(config.data, config.robust_eps, config.robust_norm)
    resolve_device(config.device)
    require(config.robust_preset in ("standard", "fast"), f"robust_preset must be standard or fast, got "
            f"{config.robust_preset!r}")  # fmt: skip


def run_stages(config: AuditConfig, splits: Splits, saved: SavedModel | None, progress: bool = True) -> AuditResult:
    """Every stage on ``splits`` for ``saved`` (None: search for a model first), into an
    :class:`~trusttango.report.result.AuditResult` whose figures live in a temporary folder
    until it is written or dropped."""
    workdir = Path(tempfile.mkdtemp(prefix="trusttango-audit-"))
    try:
        (workdir / "figures").mkdir()
        ctx = Context(config, splits, workdir / "figures", Budget(config.budget), saved)
        sections = _run_stages(ctx, progress)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    record = {
        "schema": "trusttango-audit",
        "schema_version": SCHEMA_VERSION,
        "config": _config_record(config),
        "versions": versions(),
        "provenance": provenance(config, splits, ctx.saved.model if ctx.saved else None),
        "stage_seconds": {s.key: s.seconds for s in sections},
        "results": ctx.record,
        "evidence_map": evidence_map(sections),
        "annex_iv": ANNEX_IV,
    }
    subtitle = f"data {config.data} · seed {config.seed} · {time.strftime('%Y-%m-%d %H:%M')}"
    result = AuditResult.from_sections(sections, record, model_spec(ctx), workdir, subtitle)
    weakref.finalize(result, shutil.rmtree, workdir, True)
    return result


def _config_record(config: AuditConfig) -> dict:
    """The config as JSON values; a model brought from Python is described, not serialised."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    values["thresholds"] = asdict(config.thresholds)
    values["model_source"] = config.model_source.describe() if config.model_source else None
    return json.loads(json.dumps(values, default=str))


def run_audit(config: AuditConfig, progress: bool = True) -> Path:
    """The audit as ``trusttango audit`` runs it: data and model from ``config``, the report
    (``index.html``, ``audit.json``, ``model_spec.json``, ``figures/`` and a searched ``model/``)
    written into ``config.out``, never half-written (see
    :meth:`~trusttango.report.result.AuditResult.write`). Returns the path of ``index.html``."""
    check_config(config)
    splits = load_data(config.data, seed=config.seed)
    saved = supplied_model(config, splits)  # a bad model fails before any long work
    check_out(config.out, config.force)
    return run_stages(config, splits, saved, progress).write(config.out, force=True)
