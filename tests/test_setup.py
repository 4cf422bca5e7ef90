"""No silent skips: a declared dependency that is missing ends the run in one line, and a skip
counts as a failure unless its reason names a platform condition."""

from __future__ import annotations

import conftest
import pytest


def test_every_declared_dependency_is_here_and_a_missing_one_is_named(monkeypatch):
    assert conftest.missing_dependencies() == []
    monkeypatch.setattr(conftest, "DECLARED_PACKAGES", (*conftest.DECLARED_PACKAGES, "no_such_package"))
    monkeypatch.setitem(conftest.DECLARED_FILES, "no-such-deb", "/no/such/file")
    assert conftest.missing_dependencies() == ["Python package no_such_package", "Debian package no-such-deb "
                                               "(/no/such/file)"]  # fmt: skip


class _Outcome:
    def __init__(self, report: pytest.TestReport) -> None:
        self.report = report

    def get_result(self) -> pytest.TestReport:
        return self.report


def _through_the_hook(outcome: str, reason: str | None) -> pytest.TestReport:
    """A report as pytest makes it for a test that ended ``outcome`` (a skip: with ``reason``),
    passed through conftest's ``pytest_runtest_makereport`` wrapper."""
    longrepr = ("test_x.py", 3, f"Skipped: {reason}") if outcome == "skipped" else None
    report = pytest.TestReport("test_x.py::test", ("test_x.py", 3, "test"), {}, outcome, longrepr, "call")
    wrapper = conftest.pytest_runtest_makereport(None, None)
    next(wrapper)
    with pytest.raises(StopIteration):
        wrapper.send(_Outcome(report))
    return report


def test_a_skip_without_a_platform_reason_fails():
    failed = _through_the_hook("skipped", "torchattacks not installed")
    assert failed.outcome == "failed"
    assert failed.longrepr == "skipped without a platform reason: Skipped: torchattacks not installed"
    assert _through_the_hook("skipped", "platform: no CUDA device").outcome == "skipped"
    assert _through_the_hook("passed", None).outcome == "passed"
