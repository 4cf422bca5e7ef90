"""The trust audit end to end on real data, and its report in a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from trusttango.errors import InputError
from trusttango.models import save_model
from trusttango.models.io import SavedModel
from trusttango.report.audit import AuditConfig, run_audit
from trusttango.report.budget import Budget

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def audited(tmp_path_factory, digits, digits_model, digits_train_config) -> Path:
    """An audit of the trained digits model (search skipped), small sample sizes; the model
    records its training settings, as ``trusttango train`` writes them."""
    root = tmp_path_factory.mktemp("audit")
    meta = {"seed": 0, "train": asdict(digits_train_config)}
    save_model(SavedModel(digits_model, digits_model.config, digits.class_names, meta), root / "model")
    cfg = AuditConfig(
        data="digits", model=root / "model", out=root / "report", n_explain=6, n_attack=60, n_membership=300
    )
    run_audit(cfg, progress=False)
    return root / "report"


def test_privacy_reports_low_fpr_attacks_and_the_epsilon_they_prove(audited):
    """RMIA and LiRA (offline, reference models trained like the model) beside the loss threshold
    on the same members and non-members; the headline is a TPR at a low FPR; the count of
    reference models is stated; a log-log ROC is drawn."""
    record = json.loads((audited / "audit.json").read_text())
    privacy = record["results"]["privacy"]
    methods = [a["method"] for a in privacy["attacks"]]
    assert methods[0].startswith("RMIA (offline, ") and methods[1].startswith("LiRA (offline, ")
    assert methods[-1] == "loss threshold (Yeom)" and len(methods) == 3
    count = int(methods[0].split(", ")[1].split()[0])
    assert 2 <= count <= 8 and privacy["reference_note"].startswith(f"{count} reference models (offline")
    assert {(a["members"], a["nonmembers"]) for a in privacy["attacks"]} == {(179, 179)}  # half the test split
    section = next(s for s in record["sections"] if s["key"] == "privacy")
    low = privacy["tpr_at_low_fpr"]
    assert section["headline"] == f"TPR {low['tpr']:.3f} at {low['fpr']:.1%} FPR ({low['attack']})"
    assert low["fpr"] == 0.01  # 179 non-members cannot show 0.1 %
    assert low["tpr"] == max(a["tpr_at_fpr_0.01"] for a in privacy["attacks"])
    assert privacy["empirical_epsilon"]["lower"] >= 0 and "prove epsilon >=" in section["text"]
    assert [f["path"] for f in section["figures"]] == ["membership_roc.png"]


def test_audit_writes_every_section(audited):
    record = json.loads((audited / "audit.json").read_text())
    keys = [s["key"] for s in record["sections"]]
    assert keys == ["genesis", "evaluation", "insight", "robustness", "detection", "privacy", "fairness"]
    by_key = {s["key"]: s for s in record["sections"]}
    assert by_key["fairness"]["skipped"] and "group attributes" in by_key["fairness"]["skipped"]
    assert by_key["genesis"]["skipped"]  # model supplied: search skipped, and said so
    assert record["results"]["evaluation"]["accuracy"] > 0.9
    assert 0 < record["results"]["robustness"]["ara"]["ara"] < 1
    n_ara = record["results"]["robustness"]["n"]["ara"]  # ARA says what it is over: correct images only
    assert f"over {n_ara} correctly classified test images only" in by_key["robustness"]["text"]
    assert all(s["seconds"] > 0 for s in record["sections"])
    # an undefended CNN: AutoAttack at the stated budget breaks it, so robustness does not pass
    robust = record["results"]["robustness"]
    assert robust["eps"] == 0.1 and "Wong & Kolter 2018" in robust["eps_source"]
    assert robust["attack"]["name"] == "autoattack" and robust["attack"]["preset"] == "standard"
    assert [row["attack"] for row in robust["attack"]["rows"]] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert robust["attack"]["rows"][-1]["robust_accuracy"] == pytest.approx(robust["robust_accuracy"])
    assert robust["robust_accuracy"] < 0.45 and by_key["robustness"]["verdict"] == "fail"  # threshold 0.5, warn 0.45
    assert "AutoAttack (standard: APGD-CE, APGD-T, FAB-T, Square" in by_key["robustness"]["threshold"]
    assert by_key["detection"]["verdict"] == "not established" and "adaptive" in by_key["detection"]["threshold"]
    assert by_key["privacy"]["verdict"] in {"not established", "fail"} and "Carlini" in by_key["privacy"]["threshold"]
    for s in record["sections"]:
        for f in s["figures"]:
            assert (audited / "figures" / f["path"]).stat().st_size > 1000


def test_report_renders_in_headless_chromium(audited, tmp_path):
    from playwright import sync_api as playwright  # a pinned test dependency (requirements.lock)

    assert Path(CHROMIUM).exists(), "Debian chromium is installed by make setup (apt-packages.txt)"
    html = (audited / "index.html").read_text()
    assert "<script" not in html and "http://" not in html and "https://" not in html  # offline, self-contained
    errors: list[str] = []
    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        try:
            for width, name in ((1280, "laptop"), (390, "phone")):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto((audited / "index.html").as_uri())
                widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
                assert len(widths) >= 5 and all(w > 0 for w in widths)
                assert page.locator(".pillar").count() == 7
                overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                assert overflow <= 1, f"page wider than the {name} screen by {overflow}px"
                page.screenshot(path=str(tmp_path / f"screenshot-{name}.png"), full_page=False)
        finally:
            browser.close()
    assert errors == []
    assert (tmp_path / "screenshot-laptop.png").stat().st_size > 10_000  # the report folder stays as written


def test_existing_output_is_refused_and_mismatch_caught(audited, tmp_path, digits, digits_model):
    before = sorted(p.name for p in audited.iterdir())
    with pytest.raises(InputError, match="--force"):
        run_audit(AuditConfig(data="digits", model=audited.parent / "model", out=audited), progress=False)
    assert sorted(p.name for p in audited.iterdir()) == before
    with pytest.raises(InputError, match="model expects inputs shaped"):
        run_audit(AuditConfig(data="mnist-5k", model=audited.parent / "model", out=tmp_path / "r"), progress=False)
    assert not (tmp_path / "r").exists()


def test_cli_config_file_and_errors(tmp_path, audited):
    cfg = tmp_path / "audit.yaml"
    cfg.write_text("data: digits\nbudget: 100\nunknown_knob: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "audit", "--config", str(cfg), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown_knob" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "audit", str(audited.parent / "model"), "--data", "digits",
         "--out", str(audited)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "--force" in proc.stderr


def test_audit_with_a_short_search(tmp_path):
    """Without a MODEL the audit runs the AutoDL search first and reports its ALC and learning curve."""
    cfg = AuditConfig(data="digits", out=tmp_path / "r", budget=40, n_explain=4, n_attack=40, n_membership=200)
    run_audit(cfg, progress=False)
    record = json.loads((tmp_path / "r" / "audit.json").read_text())
    genesis = record["sections"][0]
    assert genesis["key"] == "genesis" and not genesis["skipped"] and genesis["headline"].startswith("ALC")
    assert 0 < record["results"]["genesis"]["alc"] <= 1 and record["results"]["genesis"]["trials"] >= 1
    assert (tmp_path / "r" / "figures" / "learning_curve.png").stat().st_size > 1000
    assert (tmp_path / "r" / "model" / "model.safetensors").exists()


TIMINGS = ("seconds", "maps_per_s")


def _figures(record: dict) -> dict:
    """Every result and verdict of an audit record, without wall-clock timings."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in TIMINGS}
        return [strip(v) for v in value] if isinstance(value, list) else value

    verdicts = [(s["key"], s["headline"], s["verdict"], s["skipped"]) for s in record["sections"]]
    return {"results": strip(record["results"]), "verdicts": verdicts}


def test_same_seed_and_config_reproduce_the_figures(audited, tmp_path):
    """Rerunning the audit with the same seed and config gives the same numbers and the same PNG pixels.

    Same machine and thread count: CPU kernels are then deterministic. (A search under a wall-clock
    budget is the exception: how many trials fit depends on the machine's speed, so its ALC is not.)
    """
    import matplotlib.image as mpimg
    import numpy as np

    cfg = AuditConfig(
        data="digits", model=audited.parent / "model", out=tmp_path / "again", n_explain=6, n_attack=60,
        n_membership=300,
    )  # fmt: skip
    run_audit(cfg, progress=False)
    first = json.loads((audited / "audit.json").read_text())
    second = json.loads((tmp_path / "again" / "audit.json").read_text())
    assert _figures(first) == _figures(second)
    pngs = sorted(p.name for p in (audited / "figures").glob("*.png"))
    assert len(pngs) >= 5 and pngs == sorted(p.name for p in (tmp_path / "again" / "figures").glob("*.png"))
    for name in pngs:
        a, b = mpimg.imread(audited / "figures" / name), mpimg.imread(tmp_path / "again" / "figures" / name)
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-6, name


def test_detection_stage_survives_an_attack_that_flips_nothing(tmp_path, monkeypatch, digits, digits_model):
    """An attack the model resists leaves no adversarial inputs: the stage says so instead of failing."""
    import trusttango.robust
    from trusttango.detect import EntropyDetector, evaluate_detector
    from trusttango.report.audit import Context, detection

    class Resisted:  # stands in for PGD against a model it cannot fool: returns the inputs unchanged
        def __init__(self, model, **_):
            pass

        def __call__(self, x, y):
            return x

    cfg = AuditConfig(data="digits", out=tmp_path / "r", n_attack=60)
    saved = SavedModel(digits_model, digits_model.config, digits.class_names, {})
    ctx = Context(cfg, digits, tmp_path / "figures", Budget(float("inf")), saved=saved)
    monkeypatch.setattr(trusttango.robust, "PGD", Resisted)
    section = detection(ctx)
    assert [r["attack"] for r in ctx.record["detection"]] == ["FGSM (seen)"]
    assert "PGD (unseen) flipped no held-out input" in section.text and section.verdict == "not established"
    x, _ = ctx.sample(4)
    with pytest.raises(InputError, match=r"evaluate_detector \(PGD\): need clean and adversarial inputs, got 4 and 0"):
        evaluate_detector(EntropyDetector(digits_model), x, x[:0], "PGD")


def test_an_interrupted_audit_leaves_nothing_half_written(audited, tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) in the middle of the stages: no report folder, no staging
    folder left beside it; a later audit into the same folder is not refused."""
    from trusttango.report import audit as audit_module

    def interrupted(ctx):
        raise KeyboardInterrupt

    stages = dict(audit_module.STAGES)
    stages["robustness"] = interrupted
    monkeypatch.setattr(audit_module, "STAGES", list(stages.items()))
    cfg = AuditConfig(data="digits", model=audited.parent / "model", out=tmp_path / "r", n_explain=4, n_attack=20,
                      n_membership=50)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_audit(cfg, progress=False)
    assert not (tmp_path / "r").exists() and list(tmp_path.iterdir()) == []


def test_robustness_the_budget_cannot_afford_says_what_it_needs(tmp_path, digits, digits_model):
    """When not even 10 images of the AutoAttack ensemble fit in the stage's share (here: none left), no figure
    is given: the section says what it would need."""
    from trusttango.report.audit import Context, robustness

    cfg = AuditConfig(data="digits", out=tmp_path / "r", n_attack=60)
    saved = SavedModel(digits_model, digits_model.config, digits.class_names, {})
    ctx = Context(cfg, digits, tmp_path / "figures", Budget(0.0), saved=saved)
    ctx.record["evaluation"] = {"accuracy": 0.95}
    section = robustness(ctx)
    assert section.verdict == "not established" and section.headline == "not measured (budget)"
    assert "not run (budget)" in section.threshold
    assert "--budget" in section.text and ctx.record["robustness"]["robust_accuracy"] is None


def _toolkit_schema() -> dict:
    """The Model Card Toolkit's own schema v0.0.2, from its PyPI package (installed --no-deps; not
    imported). Its one malformed reference, ``#definitions/graphic`` (the JSON pointer lacks its
    slash; the toolkit's older jsonschema let it pass), is read as the ``#/definitions/graphic`` meant."""
    import importlib.util

    root = Path(importlib.util.find_spec("model_card_toolkit").submodule_search_locations[0])
    text = (root / "schema" / "v0.0.2" / "model_card.schema.json").read_text()
    assert text.count('"#definitions/') == 1
    return json.loads(text.replace('"#definitions/', '"#/definitions/'))


def test_model_card_validates_and_carries_every_headline_figure(audited):
    """``model_card.json`` validates against the toolkit's schema (formats checked); its figures are the
    audit's, each on its slice; proportions carry the Wilson interval scipy computes; skipped stages and
    verdicts short of a pass are limitations; the figures are the report's PNGs."""
    import base64

    import jsonschema
    from scipy.stats import binomtest

    card = json.loads((audited / "model_card.json").read_text())
    record = json.loads((audited / "audit.json").read_text())
    jsonschema.Draft7Validator(_toolkit_schema(), format_checker=jsonschema.FormatChecker()).validate(card)
    metrics = {m["type"]: m for m in card["quantitative_analysis"]["performance_metrics"]}
    found = record["results"]
    accuracy = metrics["accuracy"]
    n = found["evaluation"]["n"]
    assert float(accuracy["value"]) == pytest.approx(found["evaluation"]["accuracy"], abs=5e-4)
    assert accuracy["slice"] == f"test (n={n})"
    reference = binomtest(round(found["evaluation"]["accuracy"] * n), n).proportion_ci(method="wilson")
    assert float(accuracy["confidence_interval"]["lower_bound"]) == pytest.approx(reference.low, abs=5e-4)
    assert float(accuracy["confidence_interval"]["upper_bound"]) == pytest.approx(reference.high, abs=5e-4)
    robust = metrics["robust accuracy"]
    assert float(robust["value"]) == pytest.approx(found["robustness"]["robust_accuracy"], abs=5e-4)
    assert "AutoAttack standard at linf eps 0.1" in robust["slice"] and "confidence_interval" in robust
    assert "correctly classified" in metrics["adversarial robustness area (ARA)"]["slice"]
    assert float(metrics["membership-inference AUC"]["value"]) == pytest.approx(found["privacy"]["membership_auc"],
                                                                               abs=5e-4)  # fmt: skip
    listed = card["quantitative_analysis"]["performance_metrics"]
    detection = [m for m in listed if m["type"] == "adversarial-example detection AUC"]
    assert [float(m["value"]) for m in detection] == pytest.approx([d["auc"] for d in found["detection"]], abs=5e-4)
    limitations = " | ".join(item["description"] for item in card["considerations"]["limitations"])
    assert "fairness: not audited (" in limitations and "robustness: verdict fail" in limitations
    graphics = card["quantitative_analysis"]["graphics"]["collection"]
    pngs = sum(len(s["figures"]) for s in record["sections"])
    assert len(graphics) == pngs > 0 and all(base64.b64decode(g["image"])[:4] == b"\x89PNG" for g in graphics)
    assert card["model_parameters"]["output_format"].startswith("10 logits")


def test_markdown_card_header_is_a_model_index_hubs_read(audited):
    """``MODEL_CARD.md``: huggingface_hub's own parser reads its YAML header's ``model-index`` as
    evaluation results equal to the audit's figures; the body lists the figures and limitations."""
    from huggingface_hub import ModelCard

    text = (audited / "MODEL_CARD.md").read_text()
    card = json.loads((audited / "model_card.json").read_text())
    results = ModelCard(text).data.eval_results
    metrics = card["quantitative_analysis"]["performance_metrics"]
    assert [r.metric_value for r in results] == [float(m["value"]) for m in metrics]
    assert {(r.task_type, r.dataset_name, r.dataset_split) for r in results} == {("image-classification", "digits",
                                                                                  "test")}  # fmt: skip
    accuracy = next(r for r in results if r.metric_type == "accuracy")
    assert accuracy.metric_name.startswith("accuracy: test (n=") and accuracy.verified is False
    body = text.split("---", 2)[2]
    assert all(m["type"] in body and m["slice"] in body for m in metrics)
    assert all(item["description"] in body for item in card["considerations"]["limitations"])


def test_evidence_map_covers_the_seven_requirements_and_says_what_to_supply(audited):
    """Every HLEG 2019 requirement and the AI Act's Art. 10, 13 and 15 rows are in ``audit.json``
    and the page; a requirement no stage measured (or whose stage was skipped) says "supply";
    otherwise its verdict is its weakest evidence's; Annex IV 2(g) is named."""
    record = json.loads((audited / "audit.json").read_text())
    rows = record["evidence_map"]
    verdicts = {s["key"]: s["verdict"] for s in record["sections"]}
    hleg = [r["requirement"] for r in rows if r["framework"] == "HLEG 2019"]
    assert hleg == ["Human agency and oversight", "Technical robustness and safety", "Privacy and data governance",
                    "Transparency", "Diversity, non-discrimination and fairness",
                    "Societal and environmental well-being", "Accountability"]  # fmt: skip
    clauses = " ".join(r["clause"] for r in rows if r["framework"] == "AI Act")
    assert all(c in clauses for c in ("Art. 10(2)", "Art. 13", "Art. 15(1)", "Art. 15(5)", "Art. 14", "Art. 72"))
    by_name = {r["requirement"]: r for r in rows}
    assert by_name["Human agency and oversight"]["verdict"] == "supply" and by_name["Human agency and oversight"][
        "supply"]  # fmt: skip
    assert by_name["Diversity, non-discrimination and fairness"]["evidence"] == []  # fairness was skipped here
    robust = by_name["Technical robustness and safety"]
    assert [e["stage"] for e in robust["evidence"]] == ["evaluation", "robustness", "detection"]
    assert robust["verdict"] == "fail" == verdicts["robustness"]  # the weakest of pass, fail, not established
    accuracy = next(r for r in rows if r["clause"] == "Art. 15(1)")
    assert accuracy["verdict"] == verdicts["evaluation"] and "test accuracy" in accuracy["evidence"][0]["figure"]
    assert "2(g)" in record["annex_iv"]
    page = (audited / "index.html").read_text()
    assert "Evidence map" in page and "Annex IV" in page and "Societal and environmental well-being" in page


def test_audit_json_follows_its_schema_and_records_provenance(audited, digits):
    """``audit.json`` validates against the schema shipped in the package; its provenance is this
    checkout's commit, the model files' and the data's sha256 (recomputed here), seed, threads, device."""
    import hashlib

    import jsonschema

    from trusttango.report.provenance import audit_schema, sha256_tensors

    record = json.loads((audited / "audit.json").read_text())
    jsonschema.Draft202012Validator(audit_schema()).validate(record)
    assert record["schema_version"] == "1.0"
    found = record["provenance"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    assert found["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    model_dir = audited.parent / "model"
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    assert found["model_files"] == {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files} != {}
    assert found["data"]["test"] == {"n": len(digits.test), "sha256": sha256_tensors(digits.test.x, digits.test.y)}
    assert found["seed"] == record["config"]["seed"] and found["threads"] >= 1 and found["device"] == "cpu"
    bad = {**record, "schema_version": "0.9"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(audit_schema()).validate(bad)


def test_the_manifest_catches_a_tampered_report(audited, tmp_path):
    """``sha256sum -c MANIFEST.sha256`` (coreutils, independent of us) passes on the report as
    written; after a figure is edited both it and :func:`verify_manifest` name that file."""
    from trusttango.report.provenance import verify_manifest

    copy = tmp_path / "report"
    shutil.copytree(audited, copy)
    listed = [line.split("  ", 1)[1] for line in (copy / "MANIFEST.sha256").read_text().splitlines()]
    assert {"index.html", "audit.json", "model_card.json", "MODEL_CARD.md", "model_spec.json"} <= set(listed)
    assert any(name.startswith("figures/") for name in listed)
    check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=copy, capture_output=True, text=True)
    assert check.returncode == 0 and verify_manifest(copy) == [], check.stdout
    figure = next(name for name in listed if name.startswith("figures/"))
    with open(copy / figure, "ab") as handle:
        handle.write(b"\0")
    check = subprocess.run(["sha256sum", "--quiet", "-c", "MANIFEST.sha256"], cwd=copy, capture_output=True, text=True)
    assert check.returncode == 1 and figure in check.stdout
    assert verify_manifest(copy) == [f"{figure}: changed"]


def _audit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trusttango.cli", "audit", *args], capture_output=True, text=True,
                          timeout=600)  # fmt: skip


@pytest.fixture(scope="module")
def gated(audited, tmp_path_factory) -> dict:
    """Two real CLI audits of the digits model behind ``--fail-on fail``: at the data's stated
    robustness budget (L-inf 0.1: the undefended CNN fails) and at L-inf 0.01 (it holds)."""
    root = tmp_path_factory.mktemp("gate")
    config = root / "small.yaml"
    config.write_text("n_explain: 4\nn_attack: 40\nn_membership: 200\nrobust_preset: fast\nbudget: 300\n")
    runs = {}
    for name, eps in (("stated", []), ("small_eps", ["--robust-eps", "0.01"])):
        proc = _audit_cli(str(audited.parent / "model"), "--data", "digits", "--config", str(config), *eps,
                          "--out", str(root / name), "--fail-on", "fail")  # fmt: skip
        runs[name] = (proc, root / name)
    return runs


def test_fail_on_gates_ci_on_the_verdicts(gated):
    """``--fail-on fail`` exits 1 exactly when a verdict is fail (or not meaningful), names each on
    its own line, and still writes the whole report; the same model at a small eps passes the gate."""
    for name, (proc, out) in gated.items():
        record = json.loads((out / "audit.json").read_text())  # written, gate or not
        failing = [s for s in record["sections"] if s["verdict"] in ("fail", "not meaningful")]
        assert proc.returncode == (1 if failing else 0), (name, proc.returncode, proc.stderr[-2000:])
        for s in failing:
            assert f"{s['key']}: {s['verdict']} (" in proc.stderr
        assert (out / "MANIFEST.sha256").exists() and "Traceback" not in proc.stderr
    stated = json.loads((gated["stated"][1] / "audit.json").read_text())
    small = json.loads((gated["small_eps"][1] / "audit.json").read_text())
    verdict = {name: {s["key"]: s["verdict"] for s in r["sections"]} for name, r in (("stated", stated),
                                                                                     ("small", small))}  # fmt: skip
    assert verdict["stated"]["robustness"] == "fail" and gated["stated"][0].returncode == 1
    assert verdict["small"]["robustness"] in ("pass", "warn") and gated["small_eps"][0].returncode == 0


def test_audit_diff_names_what_got_worse(gated, tmp_path):
    """``audit diff`` on the two real audits: from the small-eps one to the stated-budget one the
    robustness verdict falls (exit 1 with --fail-on-regression); the other way round nothing
    falls (exit 0); the JSON names each change."""
    small, stated = gated["small_eps"][1], gated["stated"][1]
    proc = _audit_cli("diff", str(small), str(stated / "audit.json"), "--fail-on-regression", "--json",
                      str(tmp_path / "d.json"))  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    found = json.loads((tmp_path / "d.json").read_text())
    old_verdict = next(v["old"] for v in found["verdicts"] if v["stage"] == "robustness")
    assert f"robustness: {old_verdict} -> fail" in found["regressions"] and "worse: robustness" in proc.stderr
    robust = next(f for f in found["figures"] if f["figure"] == "robust accuracy")
    assert robust["old"] > robust["new"] and robust["change"] == "worse"
    proc = _audit_cli("diff", str(stated), str(small), "--fail-on-regression")
    assert proc.returncode == 0 and "worse: robustness" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_text('{"accuracy": 0.9}'), "not a trusttango audit.json"),
        (lambda p: p.write_text("not json"), "not JSON"),
        (
            lambda p: p.write_text('{"schema": "trusttango-audit", "schema_version": "0.9", "sections": []}'),
            "schema version 0.9",
        ),
    ],
)
def test_audit_diff_and_fail_on_refuse_bad_input(audited, tmp_path, make, message):
    bad = tmp_path / "other.json"
    make(bad)
    proc = _audit_cli("diff", str(bad), str(audited))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


def test_fail_on_an_unknown_level_is_refused_before_any_work(tmp_path):
    proc = _audit_cli("--data", "digits", "--out", str(tmp_path / "r"), "--fail-on", "sometimes")
    assert proc.returncode == 2 and "--fail-on" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("budget: soon\n", r"budget: Input should be a valid number, got \"soon\""),
        ("thresholds:\n  accuracy: high\n", r"thresholds.accuracy: Input should be a valid number"),
        ("thresholds:\n  acuracy: 0.9\n", r"thresholds.acuracy: unknown field"),
        ("n_attack: 2.5\n", r"n_attack: Input should be a valid integer"),
        ("model_source:\n  arch: [resnet18]\n", r"model_source.arch: Input should be a valid string"),
    ],
    ids=["number", "nested-type", "nested-unknown", "integer", "source-type"],
)
def test_audit_config_fields_are_typed(tmp_path, text, message):
    path = tmp_path / "audit.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"audit.yaml: {message}"):
        AuditConfig.from_yaml(path)
