"""k-anonymity for released tables: Mondrian multidimensional partitioning, l-diversity,
information loss, and the linkage attack it defends against.

* k-anonymity (Sweeney 2002): every record shares its quasi-identifier (QI) values with at
  least ``k - 1`` others. Distinct l-diversity (Machanavajjhala et al. 2007): every such
  equivalence class also holds at least ``l`` distinct sensitive values.
* Mondrian (LeFevre, DeWitt & Ramakrishnan 2006, "strict" variant, Algorithm 1): recursively
  split the records at the median of the QI with the widest normalised span, as long as both
  halves stay k-anonymous (and l-diverse); each leaf is generalised to its ranges / value sets.
* Normalised certainty penalty (Xu et al. 2006, Section 3.1): per record and QI, the span of
  the generalised interval over the span of the whole column (numeric), or
  ``(|set| - 1) / (|domain| - 1)`` (categorical); NCP is the mean over records and QIs.
* Linkage attack (Sweeney 2002): join the released table with an identified table on the QIs
  and count people who match exactly one released record.

Numeric QIs are released as ``"lo-hi"`` (or the single value), categorical QIs as
``"a|b|c"`` (or ``"*"`` for the whole domain). The input frame is never modified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trusttango.errors import InputError, require

KINDS = ("numeric", "categorical")
ANY = "*"
_RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)-(-?\d+(?:\.\d+)?)$")

# The lecture's toy table (names, gender, year of birth, test result): reconstructed, 14 records.
LECTURE_TABLE = pd.DataFrame(
    {
        "name": ["Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hans", "Ida", "Jonas", "Karla", "Lukas",
                 "Mia", "Noah"],
        "gender": ["F", "M", "F", "M", "F", "M", "F", "M", "F", "M", "F", "M", "F", "M"],
        "year_of_birth": [1985, 1987, 1991, 1983, 1986, 1992, 1990, 1984, 1993, 1989, 1988, 1986, 1994, 1991],
        "test_result": ["positive", "negative", "negative", "positive", "negative", "negative", "positive", "negative",
                        "negative", "positive", "negative", "negative", "positive", "negative"],
    }
)  # fmt: skip


def lecture_table() -> pd.DataFrame:
    """A copy of the 14-record lecture example: identifier ``name``, QIs ``gender`` and
    ``year_of_birth``, sensitive ``test_result``."""
    return LECTURE_TABLE.copy()


@dataclass
class Anonymized:
    """A k-anonymous release: the table, its equivalence classes and its information loss."""

    table: pd.DataFrame
    k: int
    l_diversity: int | None
    quasi_identifiers: list[str]
    sensitive: list[str]
    ncp: float  # normalised certainty penalty in [0, 1]
    n_classes: int


def qi_kinds(frame: pd.DataFrame, qi: list[str] | dict[str, str]) -> dict[str, str]:
    """QI name -> ``"numeric"`` / ``"categorical"``; given as a dict, or inferred from the dtypes."""
    require(len(qi) > 0, "qi: give at least one quasi-identifier column")
    kinds = dict(qi) if isinstance(qi, dict) else {}
    for name in qi:
        require(name in frame.columns, f"qi: column {name!r} not in the table (columns: {', '.join(frame.columns)})")
        kinds.setdefault(name, "numeric" if pd.api.types.is_numeric_dtype(frame[name]) else "categorical")
        require(kinds[name] in KINDS, f"qi: kind of {name!r} must be one of {KINDS}, got {kinds[name]!r}")
    return kinds


def _encode(frame: pd.DataFrame, kinds: dict[str, str]) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """QIs as a float matrix (categories as sorted codes) and each categorical column's categories."""
    cols, cats = [], []
    for name, kind in kinds.items():
        if kind == "numeric":
            values = pd.to_numeric(frame[name], errors="coerce")
            bad = frame[name][values.isna()]
            if len(bad):
                raise InputError(f"qi: numeric column {name!r} has a non-numeric or missing value {bad.iloc[0]!r}")
            cols.append(values.to_numpy(float))
            cats.append(None)
        else:
            codes, uniques = pd.factorize(frame[name].astype(str), sort=True)
            cols.append(codes.astype(float))
            cats.append(np.asarray(uniques))
    return np.stack(cols, 1), cats


def _spans(x: np.ndarray) -> np.ndarray:
    return x.max(0) - x.min(0) if len(x) else np.zeros(x.shape[1])


def _diverse(sens: np.ndarray | None, rows: np.ndarray, l_diversity: int | None) -> bool:
    return l_diversity is None or len(np.unique(sens[rows])) >= l_diversity


def mondrian(x: np.ndarray, k: int, sens: np.ndarray | None = None, l_diversity: int | None = None) -> list[np.ndarray]:
    """Strict Mondrian partitions (row index arrays) of the encoded QI matrix ``x``."""
    full = np.maximum(_spans(x), 1e-12)
    done, todo = [], [np.arange(len(x))]
    while todo:
        rows = todo.pop()
        part = x[rows]
        for dim in np.argsort(-_spans(part) / full):
            col = part[:, dim]
            median = np.median(col)
            left = col <= median if (col > median).any() else col < median
            lo, hi = rows[left], rows[~left]
            if min(len(lo), len(hi)) >= k and _diverse(sens, lo, l_diversity) and _diverse(sens, hi, l_diversity):
                todo += [lo, hi]
                break
        else:
            done.append(rows)
    return done


def _format_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _generalise(values: np.ndarray, categories: np.ndarray | None) -> tuple[str, float]:
    """The released value of one QI over one class, and its certainty penalty (unnormalised for numbers)."""
    if categories is None:
        lo, hi = values.min(), values.max()
        text = _format_number(lo) if lo == hi else f"{_format_number(lo)}-{_format_number(hi)}"
        return text, float(hi - lo)
    present = np.unique(values).astype(int)
    if len(present) == len(categories) and len(present) > 1:
        return ANY, 1.0
    text = "|".join(str(categories[i]) for i in present)
    return text, (len(present) - 1) / max(1, len(categories) - 1)


def anonymize(
    frame: pd.DataFrame,
    k: int,
    qi: list[str] | dict[str, str],
    sensitive: list[str] | None = None,
    identifiers: list[str] | None = None,
    l_diversity: int | None = None,
) -> Anonymized:
    """k-anonymise ``frame`` with Mondrian (optionally distinct l-diverse on the first
    sensitive column). Identifier columns are dropped; the input is not modified."""
    sensitive, identifiers = list(sensitive or []), list(identifiers or [])
    require(isinstance(k, int) and k >= 1, f"k must be an integer >= 1, got {k!r}")
    require(k <= len(frame), f"k={k} is larger than the table ({len(frame)} rows)")
    for name in sensitive + identifiers:
        require(name in frame.columns, f"column {name!r} not in the table (columns: {', '.join(frame.columns)})")
    kinds = qi_kinds(frame, qi)
    require(
        not set(kinds) & set(sensitive + identifiers),
        "a column cannot be both a quasi-identifier and sensitive/identifier",
    )
    sens = None
    if l_diversity is not None:
        require(sensitive, "l-diversity needs a --sensitive column")
        sens = frame[sensitive[0]].astype(str).to_numpy()
        n_distinct = len(np.unique(sens))
        require(
            1 <= l_diversity <= n_distinct,
            f"l={l_diversity}: must lie in [1, {n_distinct}] (distinct values of {sensitive[0]!r})",
        )
    x, cats = _encode(frame, kinds)
    parts = mondrian(x, k, sens, l_diversity)
    full = np.maximum(_spans(x), 1e-12)
    released = frame.drop(columns=identifiers).copy()
    generalised = {name: np.empty(len(frame), dtype=object) for name in kinds}
    penalty = 0.0
    for rows in parts:
        for j, name in enumerate(kinds):
            text, cost = _generalise(x[rows, j], cats[j])
            generalised[name][rows] = text
            penalty += len(rows) * (cost / full[j] if cats[j] is None else cost)
    for name, values in generalised.items():
        released[name] = values
    ncp = penalty / (len(frame) * len(kinds))
    return Anonymized(released, k, l_diversity, list(kinds), sensitive, ncp, len(parts))


class _Column:
    """One QI of the identified table, ready to test against released generalised values."""

    def __init__(self, raw: pd.Series, numeric: bool) -> None:
        self.numeric = numeric
        if numeric:
            self.values = raw.to_numpy(float)
        else:
            self.codes, self.uniques = pd.factorize(raw.astype(str))

    def matches(self, released: object) -> np.ndarray:
        """Which people's raw values fall inside one released value (range, value set or ``*``)."""
        text = str(released)
        if text == ANY:
            return np.ones(len(self.values if self.numeric else self.codes), bool)
        if self.numeric:
            m = _RANGE.match(text)
            lo, hi = (float(m.group(1)), float(m.group(2))) if m else (float(text), float(text))
            return (self.values >= lo) & (self.values <= hi)
        allowed = np.isin(self.uniques, text.split("|"))
        return np.append(allowed, False)[self.codes]  # code -1 (missing) never matches


@dataclass
class Linkage:
    """Outcome of a linkage attack: people whose QIs match exactly one released record."""

    reidentified: int
    population: int
    candidates: np.ndarray  # per identified person: number of released records matching

    @property
    def rate(self) -> float:
        return self.reidentified / max(1, self.population)


def linkage_attack(released: pd.DataFrame, identified: pd.DataFrame, qi: list[str]) -> Linkage:
    """Join ``identified`` (names + raw QIs, e.g. a voter list) with ``released`` on the
    quasi-identifiers (a raw value matches a range / value set containing it) and count the
    people matched by exactly one released record (Sweeney 2002)."""
    for name in qi:
        require(name in released.columns, f"qi: column {name!r} not in the released table")
        require(name in identified.columns, f"qi: column {name!r} not in the identified table")
    numeric = {name: pd.api.types.is_numeric_dtype(identified[name]) for name in qi}
    classes = released.groupby(qi, dropna=False, sort=False).size().reset_index(name="_count")
    counts = np.zeros(len(identified), dtype=np.int64)
    exact = np.ones(len(classes), bool)
    for name in qi:
        col = classes[name].astype(str)
        exact &= ~(col.eq(ANY) | col.str.contains("|", regex=False) | (col.str.match(_RANGE.pattern) & numeric[name]))
    if exact.any():  # plain values: an ordinary join
        plain = classes[exact].astype({n: identified[n].dtype for n in qi if numeric[n]})
        joined = identified[qi].reset_index(drop=True).merge(plain, how="left", on=qi)["_count"]
        counts += joined.fillna(0).to_numpy(np.int64)
    columns = [_Column(identified[name], numeric[name]) for name in qi]
    for row in classes[~exact].itertuples(index=False):
        mask = np.ones(len(identified), bool)
        for col, value in zip(columns, row, strict=False):
            mask &= col.matches(value)
        counts += mask * int(row[-1])
    return Linkage(int((counts == 1).sum()), len(identified), counts)


def read_table(path: str) -> pd.DataFrame:
    """Read a CSV table (or the built-in ``lecture`` / ``adult`` tables by name)."""
    if path == "lecture":
        return lecture_table()
    if path == "adult":
        from trusttango.data.tabular import adult_frame

        return adult_frame()
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV table ({err})") from None


def describe(result: Anonymized) -> str:
    """One line summarising a release."""
    lpart = f", l={result.l_diversity}" if result.l_diversity else ""
    sizes = result.table.groupby(result.quasi_identifiers).size()
    return (
        f"k={result.k}{lpart}: {result.n_classes} classes (smallest {int(sizes.min())}), "
        f"NCP {result.ncp:.3f}, {len(result.table)} rows"
    )


__all__ = [
    "Anonymized",
    "Linkage",
    "anonymize",
    "linkage_attack",
    "lecture_table",
    "read_table",
    "qi_kinds",
    "describe",
]
