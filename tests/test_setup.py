"""No silent skips: a declared dependency that is missing ends the run in one line, and a skip
counts as a failure unless its reason names a platform condition."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import conftest

SKIPS = """
import pytest


def test_passes():
    pass


def test_skips_on_a_platform_condition():
    pytest.skip("platform: no CUDA device")


def test_skips_for_no_platform_reason():
    pytest.skip("torchattacks not installed")
"""


def test_every_declared_dependency_is_here_and_a_missing_one_is_named(monkeypatch):
    assert conftest.missing_dependencies() == []
    monkeypatch.setattr(conftest, "DECLARED_PACKAGES", (*conftest.DECLARED_PACKAGES, "no_such_package"))
    monkeypatch.setitem(conftest.DECLARED_FILES, "no-such-deb", "/no/such/file")
    assert conftest.missing_dependencies() == ["Python package no_such_package", "Debian package no-such-deb "
                                               "(/no/such/file)"]  # fmt: skip


def test_a_skip_without_a_platform_reason_fails_the_run(tmp_path):
    shutil.copy(Path(conftest.__file__), tmp_path / "conftest.py")
    (tmp_path / "test_skips.py").write_text(SKIPS)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(tmp_path / "test_skips.py")], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "1 failed, 1 passed, 1 skipped" in proc.stdout, proc.stdout[-3000:]
    assert "skipped without a platform reason: Skipped: torchattacks not installed" in proc.stdout
