"""trusttango: one toolkit and one command to show a classifier deserves trust.

Pillars: genesis (:mod:`trusttango.automl`), insight (:mod:`trusttango.explain`),
robustness (:mod:`trusttango.robust`), privacy (:mod:`trusttango.privacy`),
fairness (:mod:`trusttango.fairness`), and the audit report (:mod:`trusttango.report`).
The foundation is :mod:`trusttango.data`, :mod:`trusttango.models` and
:mod:`trusttango.train`.
"""

__version__ = "0.1.0"

from trusttango.lazy import lazy_exports  # noqa: E402  (after __version__, which the exports' modules read)

__getattr__, __dir__ = lazy_exports(__name__, {"audit": "report.api", "AuditConfig": "report.audit"})
