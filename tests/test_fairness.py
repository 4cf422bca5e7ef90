"""Fairness pillar: subgroup metrics (cross-checked with fairlearn), Clever Hans check, mitigations, audit, CLI."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FULL
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    equalized_odds_ratio,
)
from sklearn.metrics import accuracy_score

from trusttango.data import Splits, adult_frame, load_builtin, stratified_indices
from trusttango.errors import InputError
from trusttango.evaluate import predict_proba
from trusttango.fairness import (
    GroupReweighting,
    RightReasons,
    accuracies,
    balance_table,
    clever_hans_check,
    group_labels,
    group_weights,
    inpaint,
    model_subgroups,
    plot_balance,
    region_mask,
    shift_test,
    subgroup_metrics,
    tagged_data,
)
from trusttango.models import save_model
from trusttango.torchutil import penultimate_features
from trusttango.train import TrainConfig, fit
from trusttango.workflow import train_model

TAG = (0, 0, 4, 4)
SHIRT = 6  # the hardest Fashion-MNIST class: a tag is an easier cue than the garment


def _take(ds, n, seed=0):
    idx, _ = stratified_indices(ds.y.numpy(), (n / len(ds), 1 - n / len(ds)), seed)
    return ds.subset(idx)


@pytest.fixture(scope="module")
def adult() -> Splits:
    s = load_builtin("adult")
    return Splits(_take(s.train, 4000), _take(s.val, 1000), _take(s.test, 4000))


def _adult_model(splits: Splits, hooks=()):
    tc = TrainConfig(epochs=3, batch_size=128, lr=3e-3, progress=False)
    return train_model(splits, tc, hooks, width=0.25, depth=2)


@pytest.fixture(scope="module")
def adult_model(adult):
    return _adult_model(adult)


def test_adult_builtin_real_rows_and_group_columns():
    frame = adult_frame()
    assert len(frame) == 45222 and frame["split"].value_counts().to_dict() == {"train": 30162, "test": 15060}
    s = load_builtin("adult")
    assert s.train.modality == "tabular" and s.train.x.dtype == torch.float32 and s.train.x.ndim == 2
    assert len(s.train) + len(s.val) == 30162 and len(s.test) == 15060
    assert s.class_names == ["<=50K", ">50K"] and abs(float(s.test.y.float().mean()) - 0.2457) < 0.01
    sub = s.test.subset(np.array([5, 1]))
    assert list(sub.extra["sex"]) == [s.test.extra["sex"][5], s.test.extra["sex"][1]]
    assert set(s.test.extra["race"]) >= {"White", "Black"} and s.test.extra["age"].min() >= 17


def test_subgroup_gaps_match_fairlearn(adult, adult_model):
    model, test = adult_model.model, adult.test
    assert adult_model.meta["metrics"]["test_accuracy"] > 0.78
    y, pred = test.y.numpy(), predict_proba(model, test).argmax(1).numpy()
    report = model_subgroups(model, test, columns=["sex"], n_boot=100)
    sex = test.extra["sex"]
    gaps = report.gaps
    assert gaps["demographic_parity"].difference == pytest.approx(
        demographic_parity_difference(y, pred, sensitive_features=sex)
    )
    assert gaps["demographic_parity"].ratio == pytest.approx(demographic_parity_ratio(y, pred, sensitive_features=sex))
    assert gaps["equalized_odds"].difference == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=sex)
    )
    assert gaps["equalized_odds"].ratio == pytest.approx(equalized_odds_ratio(y, pred, sensitive_features=sex))
    assert gaps["equal_opportunity"].difference == pytest.approx(
        equal_opportunity_difference(y, pred, sensitive_features=sex)
    )
    by_group = MetricFrame(metrics=accuracy_score, y_true=y, y_pred=pred, sensitive_features=sex).by_group
    frame = report.frame()
    for g in ("Female", "Male"):
        assert frame.loc[f"sex={g}", "accuracy"] == pytest.approx(by_group[g])
    lo, hi = gaps["demographic_parity"].difference_ci
    assert lo < gaps["demographic_parity"].difference < hi and hi - lo < 0.2
    assert gaps["demographic_parity"].difference > 0.05  # the well-known Adult sex gap is really there
    assert (frame["ece"] < 0.2).all() and np.allclose(frame["fnr"], 1 - frame["tpr"])


def test_intersections_flag_small_groups(adult, adult_model):
    report = model_subgroups(adult_model.model, adult.test, columns=["sex", "race"], n_boot=20, min_group=30)
    frame = report.frame()
    assert "sex=Female|race=Black" in frame.index and frame["n"].sum() == len(adult.test)
    assert frame.loc[frame["n"] < 30, "small"].all() and not frame.loc["sex=Male|race=White", "small"]


def test_image_model_with_probe_groups(digits, digits_model):
    test = digits.test
    ink = np.where(test.x.flatten(1).mean(1).numpy() > float(test.x.flatten(1).mean(1).median()), "heavy", "light")
    pred = predict_proba(digits_model, test).argmax(1).numpy()
    report = model_subgroups(digits_model, test, {"ink": ink}, positive=0, n_boot=20)
    frame = report.frame()
    for g in ("heavy", "light"):
        rows = ink == g
        assert frame.loc[f"ink={g}", "accuracy"] == pytest.approx((pred[rows] == test.y.numpy()[rows]).mean())
        assert frame.loc[f"ink={g}", "selection_rate"] == pytest.approx((pred[rows] == 0).mean())


def test_bad_groups_raise():
    y = np.array([0, 1, 1, 0])
    with pytest.raises(InputError, match="single value"):
        subgroup_metrics(y, y, {"sex": np.array(["a"] * 4)})
    with pytest.raises(InputError, match="3 rows mismatch"):
        group_labels({"sex": np.array(["a", "b", "a", "b", "a", "b", "a"])}, 4)
    with pytest.raises(InputError, match="at least one"):
        group_labels(pd.DataFrame(index=range(4)), 4)


def test_reweighing_makes_group_and_label_independent(adult):
    y, g = adult.train.y.numpy(), group_labels({"sex": adult.train.extra["sex"]})
    for mode in ("reweigh", "balanced"):
        w = group_weights(y, g, mode)
        rates = [np.average(y[g == k], weights=w[g == k]) for k in np.unique(g)]
        assert abs(rates[0] - rates[1]) < 1e-9, mode
    assert abs(y[g == "sex=Female"].mean() - y[g == "sex=Male"].mean()) > 0.15  # the raw data is not


def test_reweighting_hook_shrinks_demographic_parity_gap(adult, adult_model):
    fair = _adult_model(adult, [GroupReweighting(columns=["sex"])])
    assert fair.meta["mitigation"] == {"group_reweighting": "reweigh"}
    plain_gap = model_subgroups(adult_model.model, adult.test, columns=["sex"], n_boot=0).gaps["demographic_parity"]
    fair_gap = model_subgroups(fair.model, adult.test, columns=["sex"], n_boot=0).gaps["demographic_parity"]
    assert fair_gap.difference < plain_gap.difference - 0.03
    assert fair.meta["metrics"]["test_accuracy"] > 0.7


@pytest.fixture(scope="module")
def tagged(fmnist_small):
    return tagged_data(fmnist_small, SHIRT, TAG)


def _fmnist_fit(data: Splits, hooks=(), epochs=4):
    from trusttango.models import build_model, config_for

    model = build_model(config_for(data.train.input_shape, 10), seed=0)
    fit(model, data.train, data.val, TrainConfig(epochs=epochs, progress=False), hooks)
    return model.eval()


@pytest.fixture(scope="module")
def tagged_model(tagged):
    return _fmnist_fit(tagged.splits)


def test_clever_hans_caught_on_tagged_model_clean_model_passes(tagged, tagged_model, fmnist_model):
    hans, clean = accuracies(tagged_model, tagged), accuracies(fmnist_model, tagged)
    assert hans["tagged"] > hans["clean"] and hans["swapped"] < hans["clean"] - 0.3  # collapse on swapped tags
    assert abs(clean["swapped"] - clean["clean"]) < 0.1
    bad = clever_hans_check(tagged_model, tagged.swapped_test, region=TAG, max_examples=300)
    good = clever_hans_check(fmnist_model, tagged.swapped_test, region=TAG, max_examples=300)
    assert bad.flagged and not good.flagged
    assert bad.concentration > 3 * good.concentration and bad.flip_rate > 0.3
    assert bad.accuracy_removed > bad.accuracy + 0.2  # in-painting the tag away restores accuracy


@pytest.mark.slow
def test_right_for_right_reasons_removes_reliance_on_tag(tagged, fmnist_small):
    data = (
        tagged
        if FULL
        else tagged_data(Splits(_take(fmnist_small.train, 3000), fmnist_small.val, fmnist_small.test), SHIRT, TAG)
    )
    mask = region_mask(data.splits.train.input_shape, TAG).float()
    model = _fmnist_fit(data.splits, [RightReasons(mask, lam=100.0)], epochs=4)
    acc = accuracies(model, data)
    assert acc["swapped"] > acc["clean"] - 0.1
    assert not clever_hans_check(model, data.swapped_test, region=TAG, max_examples=300).flagged


def test_region_and_inpaint():
    with pytest.raises(InputError, match="inside the 28x28"):
        region_mask((1, 28, 28), (20, 20, 30, 30))
    x = torch.rand(2, 1, 10, 10)
    mask = region_mask((1, 10, 10), (3, 3, 6, 6))
    out = inpaint(x, mask)
    assert torch.equal(out[:, :, ~mask], x[:, :, ~mask])
    tagged = torch.full((1, 1, 10, 10), 0.3)
    tagged[:, :, 3:6, 3:6] = 1.0  # a bright box on a flat background is in-painted back to the background
    assert torch.allclose(inpaint(tagged, mask), torch.full_like(tagged, 0.3), atol=1e-3)


def test_balance_tables_and_png(adult, tmp_path):
    tables = balance_table(adult.train, ["sex", "race"])
    assert int(tables["class"]["count"].sum()) == len(adult.train)
    assert int(tables["sex"].to_numpy().sum()) == len(adult.train) and list(tables["sex"].columns) == ["<=50K", ">50K"]
    path = plot_balance(tables, tmp_path / "balance.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_shift_test_separates_shifted_deployment(fmnist_small, fmnist_model):
    same = shift_test(fmnist_model, fmnist_small.train, fmnist_small.test, max_examples=200, n_perm=50)
    dark = shift_test(fmnist_model, fmnist_small.train, fmnist_small.test.x * 0.4, max_examples=200, n_perm=400)
    assert not same.shifted and same.p_value > 0.05
    assert dark.shifted and dark.p_value < 0.05 and dark.mmd2 > 5 * max(same.mmd2, 1e-4)
    assert dark.per_class and any(c["shifted"] for c in dark.per_class.values())


def test_penultimate_fallback_on_plain_module(digits):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    assert penultimate_features(net, digits.test.x).shape == (len(digits.test), 16)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "trusttango.cli", *args], capture_output=True, text=True, timeout=600)


def _invoke(*args):
    from typer.testing import CliRunner

    from trusttango.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_fairness_and_bad_input(adult_model, tmp_path):
    save_model(adult_model, tmp_path / "m")
    n_test = len(load_builtin("adult").test)
    pd.DataFrame({"g": ["a", "b"] * 5}).to_csv(tmp_path / "short.csv", index=False)
    bad = _cli("fairness", str(tmp_path / "m"), "--data", "adult", "--groups", str(tmp_path / "short.csv"))
    assert bad.returncode == 2 and f"{n_test - 10} rows mismatch" in bad.stderr
    ok = _invoke(
        "fairness",
        str(tmp_path / "m"),
        "--data",
        "adult",
        "--columns",
        "sex",
        "--n-boot",
        "20",
        "--out",
        str(tmp_path / "o"),
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "o" / "fairness.json").exists() and (tmp_path / "o" / "balance.png").exists()
    missing = _invoke("fairness", str(tmp_path / "m"), "--data", "adult", "--columns", "gender")
    assert isinstance(missing.exception, InputError) and "gender" in str(missing.exception)


def test_cli_cleverhans_region_outside(tagged_model, tmp_path):
    from trusttango.models import SavedModel

    save_model(SavedModel(tagged_model, tagged_model.config, [str(i) for i in range(10)], {}), tmp_path / "m")
    out = _cli("cleverhans", str(tmp_path / "m"), "--data", "fashion-mnist", "--region", "25,25,40,40")
    assert out.returncode == 2 and "inside the 28x28" in out.stderr
    wrong = _invoke("cleverhans", str(tmp_path / "m"), "--data", "digits", "--region", "0,0,4,4")
    assert isinstance(wrong.exception, InputError)  # data shaped unlike the model's inputs
    ok = _invoke("cleverhans", str(tmp_path / "m"), "--data", "fashion-mnist", "--region", "0,0,4,4",
                 "--max-examples", "100", "--out", str(tmp_path / "c"))  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "c" / "cleverhans.json").exists()
