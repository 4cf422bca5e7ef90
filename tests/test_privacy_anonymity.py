"""k-anonymity (Mondrian), l-diversity, NCP and the linkage attack, verified with pycanon;
randomised response's epsilon and unbiased estimate."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pycanon import anonymity
from typer.testing import CliRunner

from trusttango.cli import app
from trusttango.data.tabular import adult_frame
from trusttango.errors import InputError
from trusttango.privacy import randomized_response as rr
from trusttango.privacy.anonymity import anonymize, lecture_table, linkage_attack

LECTURE_QI = ["gender", "year_of_birth"]
ADULT_QI = ["age", "sex", "race", "marital_status", "education_num"]


@pytest.fixture(scope="module")
def adult() -> pd.DataFrame:
    return adult_frame().sample(8000, random_state=0).reset_index(drop=True)


def test_lecture_table_k_anonymous_and_linkage_defeated():
    table = lecture_table()
    original = table.copy()
    result = anonymize(table, 3, LECTURE_QI, ["test_result"], ["name"])
    pd.testing.assert_frame_equal(table, original)  # input untouched
    assert "name" not in result.table.columns
    assert anonymity.k_anonymity(result.table, LECTURE_QI) >= 3
    assert 0 < result.ncp < 1
    raw = linkage_attack(table.drop(columns="name"), table, LECTURE_QI)
    after = linkage_attack(result.table, table, LECTURE_QI)
    assert raw.reidentified == 14 and after.reidentified == 0
    assert (after.candidates >= 3).all()


@pytest.mark.parametrize("k", [5, 25])
def test_adult_mondrian_verified_by_pycanon(adult, k):
    result = anonymize(adult, k, ADULT_QI, ["occupation"])
    assert anonymity.k_anonymity(result.table, ADULT_QI) >= k
    before = linkage_attack(adult, adult, ADULT_QI)
    after = linkage_attack(result.table, adult, ADULT_QI)
    assert before.reidentified > 100 and after.reidentified == 0
    assert result.table["occupation"].equals(adult["occupation"])  # sensitive column kept as is


def test_information_loss_grows_with_k(adult):
    ncp = [anonymize(adult, k, ADULT_QI).ncp for k in (2, 10, 100)]
    assert ncp[0] < ncp[1] < ncp[2] < 1


def test_l_diversity_verified_by_pycanon(adult):
    result = anonymize(adult, 5, ADULT_QI, ["occupation"], l_diversity=4)
    assert anonymity.l_diversity(result.table, ADULT_QI, ["occupation"]) >= 4
    assert anonymity.k_anonymity(result.table, ADULT_QI) >= 5


def test_bad_anonymization_input(adult):
    table = lecture_table()
    with pytest.raises(InputError, match="larger than the table"):
        anonymize(table, 15, LECTURE_QI)
    with pytest.raises(InputError, match="'zip'"):
        anonymize(table, 2, ["zip"])
    with pytest.raises(InputError, match="non-numeric"):
        anonymize(table, 2, {"gender": "numeric"})
    with pytest.raises(InputError, match="l=9"):
        anonymize(table, 2, LECTURE_QI, ["test_result"], l_diversity=9)


def test_cli_anonymize(tmp_path):
    src = tmp_path / "people.csv"
    lecture_table().to_csv(src, index=False)
    before = src.read_bytes()
    out = tmp_path / "released.csv"
    args = ["anonymize", str(src), "--k", "4", "--qi", "gender,year_of_birth", "--out", str(out)]
    run = CliRunner().invoke(app, [*args, "--sensitive", "test_result", "--identifiers", "name"])
    assert run.exit_code == 0, run.output
    assert "14/14 people re-identified" in run.output.replace("\n", " ")
    assert anonymity.k_anonymity(pd.read_csv(out), LECTURE_QI) >= 4
    assert src.read_bytes() == before
    bad = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", *args[:4], "--qi", "gender,zip"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "zip" in bad.stderr


def test_randomized_response_epsilon_and_unbiased_estimate(adult):
    truth = (adult["income"] == ">50K").to_numpy()
    eps = 1.0
    p = rr.p_for_epsilon(eps)
    assert rr.epsilon_of(p) == pytest.approx(eps)
    noisy = rr.randomize(truth, eps, seed=0)
    # the likelihood ratio of the two outcomes is e^epsilon (empirically)
    ratio = noisy[truth].mean() / noisy[~truth].mean()
    assert ratio == pytest.approx(math.exp(eps), rel=0.1)
    est = rr.estimate(noisy, eps)
    assert est.low <= truth.mean() <= est.high
    assert abs(noisy.mean() - truth.mean()) > 0.05  # the raw "yes" rate is biased towards 1/2
    # coverage of the 95 % interval over repeated surveys
    hits = [rr.estimate(rr.randomize(truth, eps, seed=s), eps) for s in range(200)]
    coverage = np.mean([h.low <= truth.mean() <= h.high for h in hits])
    assert 0.9 <= coverage <= 0.99
    assert abs(np.mean([h.rate for h in hits]) - truth.mean()) < 0.005


def test_cli_randomized_response(adult, tmp_path):
    src, out = tmp_path / "survey.csv", tmp_path / "noisy.csv"
    adult.assign(rich=(adult["income"] == ">50K").astype(int)).to_csv(src, index=False)
    run = CliRunner().invoke(
        app, ["randomized-response", str(src), "--column", "rich", "--epsilon", "2", "--out", str(out)]
    )
    assert run.exit_code == 0, run.output
    noisy = pd.read_csv(out)["rich"].to_numpy()
    est = rr.estimate(noisy, 2.0)
    assert est.low <= (adult["income"] == ">50K").mean() <= est.high and f"{est.rate:.4f}" in run.output
    assert (noisy != (adult["income"] == ">50K").to_numpy()).mean() > 0.05  # answers were really randomised


def test_bad_randomized_response_input():
    with pytest.raises(InputError):
        rr.p_for_epsilon(0.0)
    with pytest.raises(InputError, match="binary"):
        rr.randomize(np.array(["yes", "maybe"]), 1.0)
