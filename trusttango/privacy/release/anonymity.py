"""k-anonymity for released tables: Mondrian with numeric ranges and categorical hierarchies,
l-diversity, t-closeness and information loss.

* k-anonymity (Sweeney 2002): every record shares its quasi-identifier (QI) values with at
  least ``k - 1`` others. Distinct l-diversity (Machanavajjhala et al. 2007): every such
  equivalence class also holds at least ``l`` distinct sensitive values. t-closeness (Li, Li &
  Venkatasubramanian 2007, Section 4): the Earth Mover's Distance between a class's sensitive
  distribution and the whole table's is at most ``t`` (ordered distance for a numeric sensitive
  column, Eq. 4; equal distance, i.e. half the L1 distance, for a categorical one).
* Mondrian (LeFevre, DeWitt & Ramakrishnan 2006, "strict" variant, Algorithm 1): recursively
  split the records on the QI with the widest normalised span, as long as every part still meets
  the requirement (k, l, t). A numeric QI splits at its median; a categorical QI splits into the
  children of the class's current hierarchy node (children holding fewer than k records are
  pooled). Each leaf is generalised to its numeric ranges and the lowest common hierarchy nodes.
* Normalised certainty penalty (Xu et al. 2006, Section 3.1): per record and QI, the span of
  the generalised interval over the span of the whole column (numeric), or
  ``(leaves under the node - 1) / (all leaves - 1)`` (categorical); NCP is the mean over
  records and QIs.

The linkage attack it defends against is :mod:`trusttango.privacy.release.linkage`.

Numeric QIs are released as ``"lo-hi"`` (or the single value), categorical QIs as a node of
their :class:`~trusttango.privacy.release.hierarchy.Hierarchy` (``"*"`` for any value; the flat
hierarchy when none is given). The input frame is never modified.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from trusttango.errors import InputError, require
from trusttango.privacy.release.hierarchy import Hierarchy

KINDS = ("numeric", "categorical")
RANGE = re.compile(r"^(-?\d+(?:\.\d+)?)-(-?\d+(?:\.\d+)?)$")

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
    t_closeness: float | None = None
    hierarchies: dict[str, Hierarchy] = field(default_factory=dict)  # those used for the categorical QIs
    likely_identifiers: list[str] = field(default_factory=list)  # published columns unique per row


def unique_per_row(frame: pd.DataFrame) -> list[str]:
    """The columns whose values differ in every row (none missing): likely direct identifiers."""
    if len(frame) < 2:
        return []
    return [name for name in frame.columns if frame[name].notna().all() and frame[name].is_unique]


def check_declared(frame: pd.DataFrame, declared: Mapping[str, list[str]]) -> None:
    """Every column of ``frame`` declared exactly once (``declared``: role -> columns), each
    declared column present, no column name twice: nothing undeclared is ever published."""
    require(frame.columns.is_unique, f"columns named twice: {', '.join(frame.columns[frame.columns.duplicated()])}")
    roles: dict[str, str] = {}
    for role, names in declared.items():
        for name in names:
            require(
                name in frame.columns, f"{role}: column {name!r} not in the table (columns: {', '.join(frame.columns)})"
            )
            require(name not in roles, f"column {name!r} is declared both {roles.get(name)} and {role}")
            roles[name] = role
    undeclared = [name for name in frame.columns if name not in roles]
    require(
        not undeclared,
        f"undeclared column(s) {', '.join(undeclared)}: declare each as identifier, quasi-identifier, sensitive "
        "or insensitive (only declared columns are published)",
    )


def qi_kinds(frame: pd.DataFrame, qi: list[str] | dict[str, str], hierarchical: tuple[str, ...] = ()) -> dict[str, str]:
    """QI name -> ``"numeric"`` / ``"categorical"``; given as a dict, or inferred: categorical when a
    hierarchy is given for it (``hierarchical``) or its values are not numbers."""
    require(len(qi) > 0, "qi: give at least one quasi-identifier column")
    kinds = dict(qi) if isinstance(qi, dict) else {}
    for name in qi:
        require(name in frame.columns, f"qi: column {name!r} not in the table (columns: {', '.join(frame.columns)})")
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and name not in hierarchical
        kinds.setdefault(name, "numeric" if numeric else "categorical")
        require(kinds[name] in KINDS, f"qi: kind of {name!r} must be one of {KINDS}, got {kinds[name]!r}")
    for name in hierarchical:  # a hierarchy of a column that is not a QI is ignored
        require(name in frame.columns, f"hierarchies: column {name!r} not in the table")
        require(kinds.get(name, "categorical") == "categorical", f"hierarchies: QI {name!r} is declared numeric")
    return kinds


class _NumericQI:
    """A numeric QI: split at the median, released as the class's range."""

    def __init__(self, name: str, column: pd.Series) -> None:
        values = pd.to_numeric(column, errors="coerce")
        bad = column[values.isna()]
        if len(bad):
            raise InputError(f"qi: numeric column {name!r} has a non-numeric or missing value {bad.iloc[0]!r}")
        self.x = values.to_numpy(float)
        self.full = float(self.x.max() - self.x.min())

    def width(self, rows: np.ndarray) -> float:
        col = self.x[rows]
        return float(col.max() - col.min()) / self.full if self.full > 0 else 0.0

    def split(self, rows: np.ndarray, k: int) -> list[np.ndarray] | None:
        col = self.x[rows]
        median = np.median(col)
        left = col <= median if (col > median).any() else col < median
        return [rows[left], rows[~left]] if left.any() and not left.all() else None

    def release(self, rows: np.ndarray) -> tuple[str, float]:
        lo, hi = self.x[rows].min(), self.x[rows].max()
        text = _format_number(lo) if lo == hi else f"{_format_number(lo)}-{_format_number(hi)}"
        return text, self.width(rows)


class _CategoricalQI:
    """A categorical QI: split into the children of the class's hierarchy node, released as that node."""

    def __init__(self, name: str, column: pd.Series, hierarchy: Hierarchy | None) -> None:
        codes, values = pd.factorize(column.astype(str), sort=True)
        self.codes, self.values = codes, [str(v) for v in values]
        self.hierarchy = hierarchy or Hierarchy.flat(self.values, name)
        self.hierarchy.check_values(self.values)

    def node(self, rows: np.ndarray) -> str:
        return self.hierarchy.lca(self.values[c] for c in np.unique(self.codes[rows]))

    def width(self, rows: np.ndarray) -> float:
        return self.hierarchy.penalty(self.node(rows))

    def split(self, rows: np.ndarray, k: int) -> list[np.ndarray] | None:
        depth = len(self.hierarchy.paths[self.node(rows)])
        present, inverse = np.unique(self.codes[rows], return_inverse=True)
        branches = [self.hierarchy.paths[self.values[c]] for c in present]
        branch = np.array([path[depth] if len(path) > depth else "" for path in branches])[inverse]
        groups = [rows[branch == b] for b in np.unique(branch)]
        parts = sorted((g for g in groups if len(g) >= k), key=len)
        small = [g for g in groups if len(g) < k]
        if small and parts:  # pool the children too small to stand alone; too small a pool joins the smallest part
            pool = np.concatenate(small)
            if len(pool) >= k:
                parts.append(pool)
            else:
                parts[0] = np.concatenate([parts[0], pool])
        return parts if len(parts) >= 2 else None

    def release(self, rows: np.ndarray) -> tuple[str, float]:
        node = self.node(rows)
        return node, self.hierarchy.penalty(node)


@dataclass
class _Requirement:
    """What every equivalence class must meet: >= k records, >= l distinct sensitive values, and an
    EMD to the table's sensitive distribution <= t."""

    k: int
    sens: np.ndarray | None = None  # codes of the first sensitive column (sorted values)
    l_diversity: int | None = None
    t: float | None = None
    ordered: bool = False  # numeric sensitive column: ordered distance
    prior: np.ndarray | None = None

    def __call__(self, rows: np.ndarray) -> bool:
        if len(rows) < self.k:
            return False
        if self.l_diversity is not None and len(np.unique(self.sens[rows])) < self.l_diversity:
            return False
        return self.t is None or self.distance(rows) <= self.t + 1e-12

    def distance(self, rows: np.ndarray) -> float:
        """EMD between the class's and the table's sensitive distributions (Li et al. 2007, Section 4.2)."""
        r = np.bincount(self.sens[rows], minlength=len(self.prior)) / len(rows) - self.prior
        if self.ordered:
            return float(np.abs(np.cumsum(r)).sum() / max(1, len(r) - 1))
        return float(0.5 * np.abs(r).sum())


def mondrian(qis: list[_NumericQI | _CategoricalQI], n: int, requirement: _Requirement) -> list[np.ndarray]:
    """Strict Mondrian partitions (row index arrays) of ``n`` records."""
    done, todo = [], [np.arange(n)]
    while todo:
        rows = todo.pop()
        widths = np.array([q.width(rows) for q in qis])
        for j in np.argsort(-widths, kind="stable"):
            if widths[j] <= 0:
                continue
            parts = qis[j].split(rows, requirement.k)
            if parts is not None and all(requirement(p) for p in parts):
                todo += parts
                break
        else:
            done.append(rows)
    return done


def _format_number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _requirement(
    frame: pd.DataFrame, k: int, sensitive: list[str], l_diversity: int | None, t_closeness: float | None
) -> _Requirement:
    if l_diversity is None and t_closeness is None:
        return _Requirement(k)
    require(sensitive, "l-diversity / t-closeness need a sensitive column")
    column = frame[sensitive[0]]
    codes, values = pd.factorize(column, sort=True)
    require((codes >= 0).all(), f"sensitive column {sensitive[0]!r} has missing values")
    require(
        l_diversity is None or 1 <= l_diversity <= len(values),
        f"l={l_diversity}: must lie in [1, {len(values)}] (distinct values of {sensitive[0]!r})",
    )
    require(t_closeness is None or 0 < t_closeness <= 1, f"t-closeness: t must lie in (0, 1], got {t_closeness}")
    prior = np.bincount(codes, minlength=len(values)) / len(codes)
    ordered = pd.api.types.is_numeric_dtype(column)
    return _Requirement(k, codes, l_diversity, t_closeness, ordered, prior)


def anonymize(
    frame: pd.DataFrame,
    k: int,
    qi: list[str] | dict[str, str],
    sensitive: list[str] | None = None,
    identifiers: list[str] | None = None,
    l_diversity: int | None = None,
    hierarchies: Mapping[str, Hierarchy | Mapping[str, str]] | None = None,
    t_closeness: float | None = None,
    insensitive: list[str] | None = None,
) -> Anonymized:
    """k-anonymise ``frame`` with Mondrian, optionally distinct l-diverse and / or t-close on the
    first sensitive column. Categorical QIs generalise up ``hierarchies`` (column -> hierarchy or
    child -> parent mapping; flat when absent).

    Every column must be declared (as ARX asks): ``identifiers`` are dropped, ``qi`` generalised,
    ``sensitive`` and ``insensitive`` published as they are; an undeclared column is an
    ``InputError``. Published columns unique per row are listed in ``likely_identifiers``. The
    input is not modified."""
    sensitive, identifiers, insensitive = list(sensitive or []), list(identifiers or []), list(insensitive or [])
    require(isinstance(k, int) and k >= 1, f"k must be an integer >= 1, got {k!r}")
    require(k <= len(frame), f"k={k} is larger than the table ({len(frame)} rows)")
    require(len(qi) > 0, "qi: give at least one quasi-identifier column")
    declared = {"identifier": identifiers, "quasi-identifier": list(qi), "sensitive": sensitive}
    check_declared(frame, declared | {"insensitive": insensitive})
    trees = {
        name: h if isinstance(h, Hierarchy) else Hierarchy(h, f"hierarchies: {name}")
        for name, h in (hierarchies or {}).items()
    }
    kinds = qi_kinds(frame, qi, tuple(trees))
    requirement = _requirement(frame, k, sensitive, l_diversity, t_closeness)
    qis = [
        _NumericQI(name, frame[name]) if kind == "numeric" else _CategoricalQI(name, frame[name], trees.get(name))
        for name, kind in kinds.items()
    ]
    parts = mondrian(qis, len(frame), requirement)
    released = frame.drop(columns=identifiers).copy()
    generalised = {name: np.empty(len(frame), dtype=object) for name in kinds}
    penalty = 0.0
    for rows in parts:
        for name, q in zip(kinds, qis, strict=True):
            text, cost = q.release(rows)
            generalised[name][rows] = text
            penalty += len(rows) * cost
    for name, values in generalised.items():
        released[name] = values
    ncp = penalty / (len(frame) * len(kinds))
    used = {name: q.hierarchy for name, q in zip(kinds, qis, strict=True) if isinstance(q, _CategoricalQI)}
    published = frame[sensitive + insensitive]
    return Anonymized(
        released, k, l_diversity, list(kinds), sensitive, ncp, len(parts), t_closeness, used, unique_per_row(published)
    )


def read_table(path: str) -> pd.DataFrame:
    """Read a comma-separated table (or the built-in ``lecture`` / ``adult`` tables by name).

    Refused with a one-line ``InputError`` naming the column: a byte-order mark, an empty or
    repeated header (pandas would rename them ``Unnamed: 2`` / ``age.1`` and publish them under
    names nobody declared) and another delimiter (the table reads as one column)."""
    if path == "lecture":
        return lecture_table()
    if path == "adult":
        from trusttango.data.tabular import adult_frame

        return adult_frame()
    file = Path(path)
    require(file.is_file(), f"{path}: no such file")
    raw = file.read_bytes()
    _check_header(path, raw)
    try:
        return pd.read_csv(io.BytesIO(raw))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable CSV table ({err})") from None


def _check_header(path: str, raw: bytes) -> None:
    """The header row: no byte-order mark, every name non-empty and unique, more than one
    column unless the only one holds no other delimiter."""
    text = raw.decode("utf-8", errors="replace")
    require(text.strip(), f"{path}: empty file (expected a header row and records)")
    header = next(csv.reader([text.splitlines()[0]]))
    require(
        not raw.startswith(codecs.BOM_UTF8),
        f"{path}: starts with a byte-order mark, so the first column would be named {header[0]!r}; "
        "save it as UTF-8 without one",
    )
    for i, name in enumerate(header, 1):
        require(name.strip(), f"{path}: column {i} has an empty header")
    seen = [name for i, name in enumerate(header) if name in header[:i]]
    if seen:
        raise InputError(f"{path}: column {seen[0]!r} appears more than once in the header")
    other = [d for d in (";", "\t", "|") if len(header) == 1 and d in header[0]]
    if other:
        raise InputError(f"{path}: reads as one column {header[0]!r}: the delimiter looks like {other[0]!r}, not ','")


def describe(result: Anonymized) -> str:
    """One line summarising a release."""
    lpart = f", l={result.l_diversity}" if result.l_diversity else ""
    lpart += f", t={result.t_closeness:g}" if result.t_closeness else ""
    sizes = result.table.groupby(result.quasi_identifiers).size()
    return (
        f"k={result.k}{lpart}: {result.n_classes} classes (smallest {int(sizes.min())}), "
        f"NCP {result.ncp:.3f}, {len(result.table)} rows"
    )


__all__ = [
    "Anonymized",
    "anonymize",
    "lecture_table",
    "read_table",
    "qi_kinds",
    "describe",
    "check_declared",
    "unique_per_row",
]
