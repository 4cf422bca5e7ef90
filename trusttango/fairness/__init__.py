"""Fairness and "Clever Hans": subgroup disparities, spurious-correlation checks, mitigations, dataset audit."""

from trusttango.fairness.audit import ShiftResult, balance_table, plot_balance, shift_test
from trusttango.fairness.cleverhans import (
    CleverHansReport,
    TaggedData,
    accuracies,
    add_tag,
    attribution_share,
    clever_hans_check,
    inpaint,
    region_mask,
    tagged_data,
)
from trusttango.fairness.mitigation import GroupReweighting, RightReasons, group_weights
from trusttango.fairness.subgroups import GroupMetrics, SubgroupReport, group_labels, model_subgroups, subgroup_metrics

__all__ = [
    "CleverHansReport",
    "GroupMetrics",
    "GroupReweighting",
    "RightReasons",
    "ShiftResult",
    "SubgroupReport",
    "TaggedData",
    "accuracies",
    "add_tag",
    "attribution_share",
    "balance_table",
    "clever_hans_check",
    "group_labels",
    "group_weights",
    "inpaint",
    "model_subgroups",
    "plot_balance",
    "region_mask",
    "shift_test",
    "subgroup_metrics",
    "tagged_data",
]
