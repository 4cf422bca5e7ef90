"""Generalisation hierarchies of categorical quasi-identifiers (Sweeney 2002, "Achieving
k-anonymity privacy protection using generalization and suppression", Section 2: value
generalisation hierarchies).

A hierarchy is given as a mapping child -> parent, e.g. ``{"Bachelors": "University",
"Masters": "University", "University": "*"}``; the root is ``"*"`` (any value), and a parent
that has no parent of its own hangs directly under the root. Released values are nodes of the
hierarchy; a node's certainty penalty is ``(leaves under it - 1) / (all leaves - 1)`` (Xu et al.
2006, "Utility-based anonymization using local recoding", Section 3.1). Without a declared
hierarchy a column gets the flat one (every value -> ``"*"``).

In a YAML/JSON spec file, hierarchies sit under the key ``hierarchies``, one mapping per column::

    hierarchies:
      education: {Bachelors: University, Masters: University, HS-grad: School, 11th: School}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from trusttango.errors import InputError, require

ANY = "*"


class Hierarchy:
    """A tree over the values of one categorical column, rooted at ``"*"``."""

    def __init__(self, parents: Mapping[str, str], column: str = "hierarchy") -> None:
        require(isinstance(parents, Mapping), f"{column}: hierarchy must map each value to its parent")
        self.column = column
        self.parent = {str(child): str(parent) for child, parent in parents.items()}
        require(ANY not in self.parent, f"{column}: the root {ANY!r} cannot have a parent")
        for parent in set(self.parent.values()) - set(self.parent) - {ANY}:
            self.parent[parent] = ANY
        self.paths = {ANY: (ANY,)} | {node: self._path(node) for node in self.parent}
        self.internal = set(self.parent.values())
        self.leaves = sorted(node for node in self.parent if node not in self.internal) or [ANY]
        self.n_leaves = {node: 0 for node in self.paths}
        for leaf in self.leaves:
            for node in self.paths[leaf]:
                self.n_leaves[node] += 1

    @classmethod
    def flat(cls, values: Iterable[object], column: str = "hierarchy") -> Hierarchy:
        """The one-level hierarchy: every value directly under ``"*"``."""
        return cls({str(v): ANY for v in values}, column)

    def _path(self, node: str) -> tuple[str, ...]:
        """The nodes from the root down to ``node``."""
        path = [node]
        while path[-1] != ANY:
            parent = self.parent[path[-1]]
            if parent in path:
                raise InputError(f"{self.column}: hierarchy has a cycle through {parent!r}")
            path.append(parent)
        return tuple(reversed(path))

    def __contains__(self, value: object) -> bool:
        return str(value) in self.paths

    def check_values(self, values: Iterable[object]) -> None:
        """Raise :class:`InputError` naming the first value the hierarchy does not place."""
        for value in values:
            require(value in self, f"{self.column}: value {value!r} is not in its hierarchy")

    def lca(self, nodes: Iterable[str]) -> str:
        """The lowest common ancestor: the most specific node that generalises all ``nodes``."""
        paths = [self.paths[n] for n in nodes]
        common = ANY
        for level in zip(*paths, strict=False):
            if len(set(level)) > 1:
                break
            common = level[0]
        return common

    def covers(self, node: str, value: object) -> bool:
        """Whether the released ``node`` generalises the raw ``value``."""
        return node in self.paths.get(str(value), ())

    def penalty(self, node: str) -> float:
        """Normalised certainty penalty of releasing ``node``: (leaves under it - 1) / (all leaves - 1)."""
        return (self.n_leaves[node] - 1) / max(1, len(self.leaves) - 1)


def parse_hierarchies(spec: object, where: str = "hierarchies") -> dict[str, Hierarchy]:
    """Column -> :class:`Hierarchy` from the mapping ``{column: {child: parent}}``."""
    require(isinstance(spec, Mapping), f"{where}: expected a mapping column -> {{value: parent}}")
    return {str(col): Hierarchy(parents, f"{where}: {col}") for col, parents in spec.items()}


# UCI Adult, after the hierarchies shipped with ARX's examples (Prasser et al. 2014), shortened.
ADULT_HIERARCHIES: dict[str, dict[str, str]] = {
    "education": {
        **dict.fromkeys(["Preschool", "1st-4th", "5th-6th", "7th-8th"], "Primary"),
        **dict.fromkeys(["9th", "10th", "11th", "12th"], "Lower-secondary"),
        **dict.fromkeys(["Primary", "Lower-secondary"], "No-diploma"),
        **dict.fromkeys(["HS-grad", "Some-college", "Assoc-voc", "Assoc-acdm"], "Secondary"),
        **dict.fromkeys(["Bachelors", "Masters", "Prof-school", "Doctorate"], "University"),
    },
    "marital_status": {
        **dict.fromkeys(["Married-civ-spouse", "Married-AF-spouse", "Married-spouse-absent"], "Married"),
        **dict.fromkeys(["Divorced", "Separated", "Widowed"], "Was-married"),
        "Never-married": ANY,
    },
    "workclass": {
        **dict.fromkeys(["Self-emp-not-inc", "Self-emp-inc"], "Self-employed"),
        **dict.fromkeys(["Federal-gov", "State-gov", "Local-gov"], "Government"),
        **dict.fromkeys(["Private", "Without-pay"], "Private-sector"),
    },
}


def adult_hierarchies() -> dict[str, Hierarchy]:
    """The built-in hierarchies of Adult's ``education``, ``marital_status`` and ``workclass``."""
    return parse_hierarchies(ADULT_HIERARCHIES, "adult")
