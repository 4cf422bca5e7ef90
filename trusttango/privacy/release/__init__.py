"""Data release: k-anonymous tables (Mondrian over numeric ranges and categorical
generalisation hierarchies, with l-diversity and t-closeness) and the linkage attack they
defend against."""

from trusttango.privacy.release.anonymity import Anonymized, anonymize, describe, lecture_table, read_table
from trusttango.privacy.release.hierarchy import ANY, Hierarchy, adult_hierarchies, parse_hierarchies
from trusttango.privacy.release.linkage import Linkage, linkage_attack, linkage_summary, release_linkage

__all__ = [
    "ANY",
    "Anonymized",
    "Hierarchy",
    "Linkage",
    "adult_hierarchies",
    "anonymize",
    "describe",
    "lecture_table",
    "linkage_attack",
    "linkage_summary",
    "parse_hierarchies",
    "read_table",
    "release_linkage",
]
