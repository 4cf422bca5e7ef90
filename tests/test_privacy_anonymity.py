"""k-anonymity (Mondrian with numeric ranges and categorical hierarchies), l-diversity,
t-closeness, NCP and the linkage attack, verified with pycanon; randomised response's epsilon
and unbiased estimate."""

from __future__ import annotations

import json
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
from trusttango.privacy.dp import randomized_response as rr
from trusttango.privacy.release import (
    ANY,
    Hierarchy,
    adult_hierarchies,
    anonymize,
    lecture_table,
    linkage_attack,
    linkage_summary,
    release_linkage,
)

LECTURE_QI = ["gender", "year_of_birth"]
ADULT_QI = ["age", "sex", "race", "marital_status", "education_num"]
HIER_QI = ["age", "sex", "race", "marital_status", "education"]  # two hierarchies, two flat categorical QIs


def rest(frame: pd.DataFrame, *declared: str | list[str]) -> list[str]:
    """Every column not in ``declared``: published as insensitive (anonymize publishes only what was declared)."""
    names = {name for group in declared for name in ([group] if isinstance(group, str) else group)}
    return [column for column in frame.columns if column not in names]


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
    assert set(result.table["gender"]) <= {"F", "M", ANY}  # inferred flat hierarchy: a value or "*"
    diverse = anonymize(table, 3, LECTURE_QI, ["test_result"], ["name"], l_diversity=2)
    assert anonymity.l_diversity(diverse.table, LECTURE_QI, ["test_result"]) >= 2
    assert anonymity.k_anonymity(diverse.table, LECTURE_QI) >= 3


def _ncp_of_release(released: pd.DataFrame, raw: pd.DataFrame, hierarchies: dict[str, Hierarchy]) -> float:
    """NCP recomputed from the released strings alone (Xu et al. 2006): range span / column span,
    (leaves under the node - 1) / (all leaves - 1)."""
    cost = 0.0
    for name in released.columns.intersection(HIER_QI):
        if name in hierarchies:
            h = hierarchies[name]
            cost += released[name].map(lambda node, h=h: (h.n_leaves[node] - 1) / (len(h.leaves) - 1)).sum()
        else:
            bounds = released[name].astype(str).str.split("-", expand=True).astype(float).ffill(axis=1)
            cost += ((bounds.iloc[:, -1] - bounds.iloc[:, 0]) / (raw[name].max() - raw[name].min())).sum()
    return cost / (len(released) * len(HIER_QI))


def test_categorical_hierarchies_on_adult_verified_by_pycanon(adult):
    original = adult.copy()
    trees = adult_hierarchies()
    result = anonymize(
        adult,
        10,
        HIER_QI,
        ["occupation"],
        l_diversity=3,
        hierarchies=trees,
        insensitive=rest(adult, HIER_QI, "occupation"),
    )
    pd.testing.assert_frame_equal(adult, original)  # input untouched
    assert anonymity.k_anonymity(result.table, HIER_QI) >= 10
    assert anonymity.l_diversity(result.table, HIER_QI, ["occupation"]) >= 3
    for name in ("education", "marital_status", "sex", "race"):
        tree = result.hierarchies[name]
        assert all(map(tree.covers, result.table[name], adult[name]))  # a released node generalises the raw value
    released_education = set(result.table["education"])
    assert {"University", "Secondary"} & released_education  # generalised up the hierarchy, not to "*" or a set
    assert released_education & set(adult["education"])  # and specific values kept where k allows
    assert result.ncp == pytest.approx(_ncp_of_release(result.table, adult, result.hierarchies), rel=1e-9)
    before = linkage_attack(adult, adult, HIER_QI)
    after = linkage_attack(result.table, adult, HIER_QI, result.hierarchies)
    assert before.reidentified > 100 and after.reidentified == 0 and (after.candidates >= 10).all()


def test_hierarchy_structure_and_penalty():
    tree = adult_hierarchies()["education"]
    assert len(tree.leaves) == 16 and tree.paths["Masters"] == (ANY, "University", "Masters")
    assert tree.lca(["Masters", "Doctorate"]) == "University" and tree.lca(["Masters", "9th"]) == ANY
    assert tree.penalty("University") == pytest.approx(3 / 15) and tree.penalty("Masters") == 0
    assert tree.penalty("No-diploma") == pytest.approx(7 / 15) and tree.penalty(ANY) == 1
    with pytest.raises(InputError, match="cycle"):
        Hierarchy({"a": "b", "b": "a"}, "edu")
    with pytest.raises(InputError, match="'PhD' is not in its hierarchy"):
        anonymize(pd.DataFrame({"edu": ["Masters", "PhD"] * 5}), 2, ["edu"], hierarchies={"edu": {"Masters": "Uni"}})


@pytest.mark.parametrize("sensitive, t, n", [("occupation", 0.15, 8000), ("hours_per_week", 0.1, 3000)])
def test_t_closeness_verified_by_pycanon(adult, sensitive, t, n):
    table = adult.iloc[:n]  # pycanon's check loops over classes x sensitive values: keep the numeric case small
    others = rest(table, HIER_QI, sensitive)
    result = anonymize(
        table, 10, HIER_QI, [sensitive], hierarchies=adult_hierarchies(), t_closeness=t, insensitive=others
    )
    assert anonymity.t_closeness(result.table, HIER_QI, [sensitive]) <= t + 1e-9  # equal / ordered EMD
    assert anonymity.k_anonymity(result.table, HIER_QI) >= 10
    loose = anonymize(table, 10, HIER_QI, [sensitive], hierarchies=adult_hierarchies(), insensitive=others)
    assert anonymity.t_closeness(loose.table, HIER_QI, [sensitive]) > t  # the option really constrains


@pytest.mark.parametrize("k", [5, 25])
def test_adult_mondrian_verified_by_pycanon(adult, k):
    result = anonymize(adult, k, ADULT_QI, ["occupation"], insensitive=rest(adult, ADULT_QI, "occupation"))
    assert anonymity.k_anonymity(result.table, ADULT_QI) >= k
    before = linkage_attack(adult, adult, ADULT_QI)
    after = linkage_attack(result.table, adult, ADULT_QI)
    assert before.reidentified > 100 and after.reidentified == 0
    assert result.table["occupation"].equals(adult["occupation"])  # sensitive column kept as is


def test_information_loss_grows_with_k(adult):
    ncp = [anonymize(adult, k, ADULT_QI, insensitive=rest(adult, ADULT_QI)).ncp for k in (2, 10, 100)]
    assert ncp[0] < ncp[1] < ncp[2] < 1


def test_l_diversity_verified_by_pycanon(adult):
    result = anonymize(
        adult, 5, ADULT_QI, ["occupation"], l_diversity=4, insensitive=rest(adult, ADULT_QI, "occupation")
    )
    assert anonymity.l_diversity(result.table, ADULT_QI, ["occupation"]) >= 4
    assert anonymity.k_anonymity(result.table, ADULT_QI) >= 5


def test_bad_anonymization_input(adult):
    table = lecture_table()
    known = dict(identifiers=["name"], insensitive=["year_of_birth", "test_result"])
    with pytest.raises(InputError, match="larger than the table"):
        anonymize(table, 15, LECTURE_QI)
    with pytest.raises(InputError, match="'zip'"):
        anonymize(table, 2, ["zip"])
    with pytest.raises(InputError, match="non-numeric"):
        anonymize(table, 2, {"gender": "numeric"}, **known)
    with pytest.raises(InputError, match="l=9"):
        anonymize(table, 2, LECTURE_QI, ["test_result"], ["name"], l_diversity=9)
    with pytest.raises(InputError, match="t must lie"):
        anonymize(table, 2, LECTURE_QI, ["test_result"], ["name"], t_closeness=0.0)
    with pytest.raises(InputError, match="declared numeric"):
        anonymize(table, 2, {"gender": "numeric"}, hierarchies={"gender": {"F": ANY, "M": ANY}}, **known)
    with pytest.raises(InputError, match="declared both quasi-identifier and sensitive"):
        anonymize(table, 2, LECTURE_QI, ["gender"], ["name"])
    with pytest.raises(InputError, match="columns named twice: age"):
        anonymize(pd.DataFrame([[1, 2, 3]] * 4, columns=["age", "sex", "age"]), 2, ["sex"])


def test_undeclared_columns_are_refused_not_published():
    """The release publishes only declared columns: the wrong variant (pass undeclared ones
    through, as a release that forgot ``name`` would) fails here."""
    table = lecture_table()
    with pytest.raises(InputError, match=r"undeclared column\(s\) name, test_result"):
        anonymize(table, 3, LECTURE_QI)
    result = anonymize(table, 3, LECTURE_QI, insensitive=["test_result"], identifiers=["name"])
    assert list(result.table.columns) == ["gender", "year_of_birth", "test_result"]


def test_a_column_unique_per_row_is_flagged_and_counted_by_the_linkage_attack():
    """A record number declared insensitive is still a direct identifier: flagged, and the linkage
    attack joins on it, so the release does not claim "0 re-identified"."""
    table = lecture_table().assign(record=range(1000, 1014))
    result = anonymize(table, 3, LECTURE_QI, ["test_result"], ["name"], insensitive=["record"])
    assert result.likely_identifiers == ["record"]
    before, after = release_linkage(table, result)
    assert after.reidentified == 14 and after.columns == ["record"]
    line = linkage_summary(before, after, result)
    assert "14 re-identified through record" in line and "0 from the anonymised one" not in line
    clean = anonymize(table.drop(columns="record"), 3, LECTURE_QI, ["test_result"], ["name"])
    assert linkage_summary(*release_linkage(table.drop(columns="record"), clean), clean).endswith(
        "0 from the anonymised one"
    )


def test_cli_anonymize(tmp_path):
    src = tmp_path / "people.csv"
    lecture_table().to_csv(src, index=False)
    before = src.read_bytes()
    out = tmp_path / "released.csv"
    args = ["anonymize", "--data", str(src), "--k", "4", "--qi", "gender,year_of_birth", "--out", str(out)]
    run = CliRunner().invoke(app, [*args, "--sensitive", "test_result", "--identifiers", "name"])
    assert run.exit_code == 0, run.output
    assert "14/14 people re-identified" in run.output.replace("\n", " ")
    assert anonymity.k_anonymity(pd.read_csv(out), LECTURE_QI) >= 4
    assert src.read_bytes() == before
    spec = tmp_path / "bad.json"
    spec.write_text(
        json.dumps(
            {"quasi_identifiers": {"gender": "numeric", "year_of_birth": "numeric"}, "identifiers": ["name"],
             "sensitive": ["test_result"]}
        )
    )  # fmt: skip
    hier = tmp_path / "h.yaml"
    hier.write_text("gender: {F: person}\n")
    bad = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", *args[:5], "--qi", "gender,zip"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "zip" in bad.stderr  # InputError -> exit status 2 (cli.main)
    for extra, message in [
        (["--qi", "gender", "--k", "15"], "larger than the table"),
        (["--spec", str(spec)], "non-numeric"),
        (
            [
                "--qi",
                "gender",
                "--identifiers",
                "name",
                "--insensitive",
                "year_of_birth,test_result",
                "--hierarchies",
                str(hier),
            ],
            "'M' is not in its hierarchy",
        ),
    ]:
        run = CliRunner().invoke(app, [*args[:5], *extra])
        assert isinstance(run.exception, InputError) and message in str(run.exception), (extra, run.output)
    assert src.read_bytes() == before


def test_cli_anonymize_adult_with_hierarchies(tmp_path):
    out = tmp_path / "adult.csv"
    spec = tmp_path / "spec.yaml"
    others = rest(adult_frame(), ["age", "sex", "marital_status", "education", "occupation"])
    spec.write_text(
        f"quasi_identifiers: [age, sex, marital_status, education]\nsensitive: [occupation]\n"
        f"insensitive: [{', '.join(others)}]\nhierarchies:\n  sex: {{Female: person, Male: person}}\n"
    )
    args = ["anonymize", "--data", "adult", "--k", "50", "--spec", str(spec), "--hierarchies", "adult", "--t", "0.2"]
    run = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert run.exit_code == 0, run.output
    released = pd.read_csv(out)
    qi = ["age", "sex", "marital_status", "education"]
    assert anonymity.k_anonymity(released, qi) >= 50 and anonymity.t_closeness(released, qi, ["occupation"]) <= 0.2
    assert set(released["sex"]) <= {"Female", "Male", "person"} and "Was-married" in set(released["marital_status"])
    assert "0 from the anonymised one" in run.output.replace("\n", " ")


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
        app, ["randomized-response", "--data", str(src), "--column", "rich", "--epsilon", "2", "--out", str(out)]
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


PEOPLE = "name,age,sex,zip\nAnna,34,F,10115\nBen,35,M,10117\nClara,36,F,10115\nDavid,37,M,10117\n"


@pytest.mark.parametrize(
    "text,message",
    [
        ("\ufeff" + PEOPLE, "byte-order mark, so the first column would be named '\\ufeffname'"),
        (PEOPLE.replace("zip", "age", 1), "column 'age' appears more than once"),
        (PEOPLE.replace(",zip", ","), "column 4 has an empty header"),
        (PEOPLE.replace(",", ";"), "the delimiter looks like ';'"),
        (PEOPLE, "undeclared column(s) name"),
    ],
    ids=["bom", "duplicate", "empty", "delimiter", "undeclared"],
)
def test_cli_anonymize_refuses_tables_it_would_misread(tmp_path, text, message):
    src, out = tmp_path / "people.csv", tmp_path / "released.csv"
    src.write_text(text, encoding="utf-8")
    run = CliRunner().invoke(
        app, ["anonymize", "--data", str(src), "--k", "2", "--qi", "age,sex,zip", "--out", str(out)]
    )
    assert isinstance(run.exception, InputError) and message in str(run.exception), run.output
    assert not out.exists()


def test_cli_anonymize_undeclared_column_exits_2_and_writes_nothing(tmp_path):
    src = tmp_path / "people.csv"
    src.write_text(PEOPLE)
    args = [sys.executable, "-m", "trusttango.cli", "anonymize", "--data", str(src), "--k", "2", "--qi", "age,sex,zip"]
    run = subprocess.run([*args, "--out", str(tmp_path / "r.csv")], capture_output=True, text=True)
    assert run.returncode == 2 and "undeclared column(s) name" in run.stderr and len(run.stderr.splitlines()) == 1
    same = subprocess.run([*args, "--identifiers", "name", "--out", str(src)], capture_output=True, text=True)
    assert same.returncode == 2 and "(or holds) the input" in same.stderr
    assert src.read_text() == PEOPLE and not (tmp_path / "r.csv").exists()
