"""The linkage attack (Sweeney 2002, "k-anonymity: a model for protecting privacy", Section 2):
join a released table with an identified one (names + raw quasi-identifiers, e.g. a voter list)
on the quasi-identifiers and count the people matched by exactly one released record.

A raw value matches a released one when it is equal, lies inside a released numeric range
``"lo-hi"``, or lies under a released node of the column's
:class:`~trusttango.privacy.release.hierarchy.Hierarchy` (``"*"`` matches anything).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trusttango.errors import require
from trusttango.privacy.release.anonymity import RANGE, Anonymized
from trusttango.privacy.release.hierarchy import ANY, Hierarchy


class _Column:
    """One QI of the identified table, ready to test against released generalised values."""

    def __init__(self, raw: pd.Series, numeric: bool, hierarchy: Hierarchy | None) -> None:
        self.numeric = numeric
        if numeric:
            self.values = raw.to_numpy(float)
        else:
            self.codes, uniques = pd.factorize(raw.astype(str))
            self.uniques = [str(u) for u in uniques]
            self.hierarchy = hierarchy or Hierarchy.flat(self.uniques)

    def matches(self, released: object) -> np.ndarray:
        """Which people's raw values fall inside one released value (range, hierarchy node or ``*``)."""
        text = str(released)
        if text == ANY:
            return np.ones(len(self.values if self.numeric else self.codes), bool)
        if self.numeric:
            m = RANGE.match(text)
            lo, hi = (float(m.group(1)), float(m.group(2))) if m else (float(text), float(text))
            return (self.values >= lo) & (self.values <= hi)
        allowed = np.array([self.hierarchy.covers(text, u) for u in self.uniques] + [False])
        return allowed[self.codes]  # code -1 (missing) never matches


@dataclass
class Linkage:
    """Outcome of a linkage attack: people whose QIs match exactly one released record."""

    reidentified: int
    population: int
    candidates: np.ndarray  # per identified person: number of released records matching
    columns: list[str] = field(default_factory=list)  # the columns the attack joined on

    @property
    def rate(self) -> float:
        return self.reidentified / max(1, self.population)


def linkage_attack(
    released: pd.DataFrame,
    identified: pd.DataFrame,
    qi: list[str],
    hierarchies: Mapping[str, Hierarchy] | None = None,
) -> Linkage:
    """Join ``identified`` (names + raw QIs, e.g. a voter list) with ``released`` on the
    quasi-identifiers (a raw value matches a range containing it, or a node of the column's
    hierarchy above it) and count the people matched by exactly one released record (Sweeney 2002)."""
    for name in qi:
        require(name in released.columns, f"qi: column {name!r} not in the released table")
        require(name in identified.columns, f"qi: column {name!r} not in the identified table")
    numeric = {name: pd.api.types.is_numeric_dtype(identified[name]) for name in qi}
    classes = released.groupby(qi, dropna=False, sort=False).size().reset_index(name="_count")
    counts = np.zeros(len(identified), dtype=np.int64)
    exact = np.ones(len(classes), bool)
    hierarchies = hierarchies or {}
    for name in qi:
        col = classes[name].astype(str)
        internal = col.isin(hierarchies[name].internal) if name in hierarchies else False
        exact &= ~(col.eq(ANY) | internal | (col.str.match(RANGE.pattern) & numeric[name]))
    if exact.any():  # plain values: an ordinary join
        plain = classes[exact].astype({n: identified[n].dtype for n in qi if numeric[n]})
        joined = identified[qi].reset_index(drop=True).merge(plain, how="left", on=qi)["_count"]
        counts += joined.fillna(0).to_numpy(np.int64)
    columns = [_Column(identified[name], numeric[name], hierarchies.get(name)) for name in qi]
    for row in classes[~exact].itertuples(index=False):
        mask = np.ones(len(identified), bool)
        for col, value in zip(columns, row, strict=False):
            mask &= col.matches(value)
        counts += mask * int(row[-1])
    return Linkage(int((counts == 1).sum()), len(identified), counts, list(qi))


def release_linkage(raw: pd.DataFrame, release: Anonymized) -> tuple[Linkage, Linkage]:
    """The linkage attack against the identified ``raw`` table: first on ``raw`` itself released
    without its direct identifiers (what de-identification alone protects), then on the
    anonymised ``release``: the worst of the join on its quasi-identifiers (with its
    hierarchies) and the join on each published column unique per row (a direct identifier
    left in the release re-identifies everyone whose value the attacker holds)."""
    qi = list(release.quasi_identifiers)
    plain = raw.drop(columns=[c for c in raw.columns if c not in release.table.columns])
    attacks = [linkage_attack(release.table, raw, qi, release.hierarchies)]
    attacks += [linkage_attack(release.table, raw, [name]) for name in release.likely_identifiers]
    return linkage_attack(plain, raw, qi), max(attacks, key=lambda attack: attack.reidentified)


def linkage_summary(before: Linkage, after: Linkage, release: Anonymized) -> str:
    """One line: people re-identified from the raw and from the anonymised release; "0" for the
    release only when no published column re-identifies anyone."""
    line = (
        f"linkage attack on {', '.join(release.quasi_identifiers)}: {before.reidentified}/{before.population} "
        "people re-identified from the raw release"
    )
    if not release.likely_identifiers:
        return f"{line}, {after.reidentified} from the anonymised one"
    left = ", ".join(release.likely_identifiers)
    return (
        f"{line}; the anonymised one still publishes {len(release.likely_identifiers)} likely direct "
        f"identifier(s) ({left}, unique per row): {after.reidentified} re-identified through {', '.join(after.columns)}"
    )
