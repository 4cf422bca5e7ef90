"""DP-SGD hook: trains on real data, records epsilon, and its epsilon matches an independent
RDP computation (Mironov, Talwar & Zhang 2019, sampled Gaussian mechanism, integer orders)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.validators import ModuleValidator
from torch import nn
from typer.testing import CliRunner

from trusttango.cli import app
from trusttango.cli.core import _dp_hook
from trusttango.errors import InputError
from trusttango.models import build_model, config_for
from trusttango.privacy.dp import DPSGD, GRAD_SAMPLE_MODES, PHYSICAL_BATCH, make_dp_compatible
from trusttango.train import Hook, TrainConfig, fit


def _rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    """Epsilon of ``steps`` compositions of the Poisson-subsampled Gaussian mechanism.

    RDP at integer order a: log(sum_k C(a,k) (1-q)^(a-k) q^k exp((k^2-k)/(2 sigma^2))) / (a-1)
    (Mironov et al. 2019, Eq. 7); conversion to (eps, delta) by Balle et al. 2020, Thm. 21.
    """
    best = math.inf
    for a in range(2, 257):
        terms = [
            math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)
            + (a - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * sigma**2)
            for k in range(a + 1)
        ]  # fmt: skip
        m = max(terms)
        rdp = steps * (m + math.log(sum(math.exp(t - m) for t in terms))) / (a - 1)
        eps = rdp + math.log1p(-1 / a) - (math.log(delta) + math.log(a)) / (a - 1)
        best = min(best, eps)
    return best


def _model(splits, norm="batch"):
    return build_model(config_for(splits.train.input_shape, 10, depth=2, width=0.25, norm=norm), seed=0)


@pytest.fixture(scope="module")
def dp_run(digits):
    model = _model(digits, norm="group")
    hook = DPSGD(epsilon=8.0, delta=1e-5, max_grad_norm=1.0)
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.3, optimizer="sgd", schedule="constant", progress=False)
    history = fit(model, digits.train, digits.val, cfg, [hook])
    return model, hook, history


def test_dp_sgd_trains_and_spends_the_target_epsilon(dp_run, digits):
    model, hook, history = dp_run
    eps = [r.extra["epsilon"] for r in history.records]
    assert all(a < b for a, b in zip(eps, eps[1:], strict=False)), eps  # spent epsilon grows each epoch
    assert 7.0 < eps[-1] <= 8.0 + 1e-3
    model.eval()
    with torch.no_grad():
        acc = (model(digits.test.x).argmax(1) == digits.test.y).float().mean().item()
    assert acc > 0.3  # chance is 0.1
    meta = hook.meta()["privacy"]
    assert meta["delta"] == 1e-5 and meta["accountant"] == "rdp" and meta["epsilon"] == pytest.approx(eps[-1])


def test_epsilon_matches_an_independent_rdp_computation(dp_run, digits):
    _, hook, _ = dp_run
    meta = hook.meta()["privacy"]
    assert meta["sample_rate"] == pytest.approx(1 / math.ceil(len(digits.train) / 64))
    sigma, q, steps, delta = meta["noise_multiplier"], meta["sample_rate"], meta["steps"], meta["delta"]
    independent = _rdp_epsilon(sigma, q, steps, delta)
    # the same integer orders through Opacus' analysis: the formula above agrees exactly
    orders = list(range(2, 257))
    opacus_int, _ = rdp_analysis.get_privacy_spent(
        orders=orders,
        rdp=rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=steps, orders=orders),
        delta=delta,
    )
    assert opacus_int == pytest.approx(independent, rel=1e-6)
    # a fresh accountant fed the same (sigma, q, steps) reproduces the reported epsilon
    fresh = RDPAccountant()
    fresh.history = [(sigma, q, steps)]
    assert meta["epsilon"] == pytest.approx(fresh.get_epsilon(delta), rel=1e-9)
    # Opacus' default orders include fractional ones: slightly tighter than integer orders only
    assert independent * 0.95 <= meta["epsilon"] <= independent + 1e-6


def test_batchnorm_replaced_in_place(digits):
    model = _model(digits, norm="batch")
    replaced = make_dp_compatible(model)  # the caller's object is fixed, so fit() trains what it holds
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(replaced) == 4 and all("BatchNorm2d -> GroupNorm" in r for r in replaced)
    assert ModuleValidator.validate(model, strict=False) == []


def test_prv_accountant_and_fixed_noise(digits):
    model = _model(digits, norm="group")
    hook = DPSGD(noise_multiplier=1.5, delta=1e-5, accountant="prv", grad_sample_mode="ghost")
    cfg = TrainConfig(epochs=1, batch_size=256, lr=1e-2, optimizer="adam", schedule="constant", progress=False)
    fit(model, digits.train, None, cfg, [hook])
    meta = hook.meta()["privacy"]
    assert hook.replaced == [] and meta["noise_multiplier"] == 1.5
    rdp = _rdp_epsilon(1.5, meta["sample_rate"], meta["steps"], 1e-5)
    assert 0.5 * rdp < meta["epsilon"] < rdp  # PRV is tighter than RDP, same order of magnitude


class _BatchSizes(Hook):
    """Records the size of every physical batch the loop runs forward/backward on."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def batch(self, state, x, y):
        self.sizes.append(len(y))
        return x, y


def test_virtual_batches_bound_memory_without_changing_lots_or_accounting(digits):
    runs = {}
    for physical in (None, 32):
        model, sizes = _model(digits, norm="group"), _BatchSizes()
        hook = DPSGD(noise_multiplier=1.0, max_physical_batch_size=physical)
        cfg = TrainConfig(epochs=2, batch_size=256, lr=0.5, optimizer="sgd", schedule="constant", progress=False)
        fit(model, digits.train, None, cfg, [hook, sizes])
        weights = torch.cat([p.detach().flatten() for p in model.parameters()])
        runs[physical] = hook.meta()["privacy"], sizes.sizes, weights
    (plain, plain_sizes, plain_w), (virtual, virtual_sizes, virtual_w) = runs[None], runs[32]
    assert max(plain_sizes) > 200 and max(virtual_sizes) <= 32  # lots of ~256 cut into passes of <= 32
    assert sum(virtual_sizes) == sum(plain_sizes)  # the same Poisson lots, only split
    assert len(virtual_sizes) > 5 * len(plain_sizes)
    assert virtual["steps"] == plain["steps"] == len(plain_sizes)  # one noisy step (and accountant step) per lot
    assert virtual["sample_rate"] == plain["sample_rate"] == pytest.approx(1 / math.ceil(len(digits.train) / 256))
    assert virtual["epsilon"] == plain["epsilon"] and virtual["max_physical_batch_size"] == 32
    # summed clipped gradients over the pieces + one noise draw per lot = the unsplit update
    torch.testing.assert_close(virtual_w, plain_w, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(epsilon=0.0),
        dict(epsilon=-1.0),
        dict(noise_multiplier=1.0, epsilon=3.0),
        dict(epsilon=3.0, delta=1.5),
        dict(epsilon=3.0, max_physical_batch_size=0),
        dict(noise_multiplier=0.0),
        dict(noise_multiplier=float("nan")),
        dict(epsilon=float("nan")),
        dict(epsilon=3.0, accountant="gdp"),
    ],
)
def test_bad_dp_arguments(kwargs):
    with pytest.raises(InputError):
        DPSGD(**kwargs)


def test_delta_not_below_one_over_n_is_refused(digits):
    model = _model(digits, norm="group")
    with pytest.raises(InputError, match=r"delta 0.01 >= 1/N"):
        fit(model, digits.train.subset(np.arange(200)), None, TrainConfig(epochs=1, progress=False),
            [DPSGD(noise_multiplier=1.0, delta=0.01)])  # fmt: skip


def test_layer_opacus_rejects_is_named(monkeypatch):
    class Mixer(nn.Module):  # a layer Opacus' validators reject (stands for any unsupported layer)
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(x - x.mean(0))

    monkeypatch.setitem(ModuleValidator.VALIDATORS, Mixer, lambda m: [ValueError("mixes examples")])
    with pytest.raises(InputError, match=r"'1' \(Mixer\).*mixes examples"):
        make_dp_compatible(nn.Sequential(nn.Linear(4, 4), Mixer()))


def test_cli_train_dp_records_guarantee(tmp_path):
    out = tmp_path / "m"
    args = [
        "--data",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--depth",
        "2",
        "--width",
        "0.25",
        "--device",
        "cpu",
    ]
    dp_args = ["--dp", "--epsilon", "3", "--delta", "1e-5", "--max-physical-batch-size", "16"]
    run = CliRunner().invoke(app, ["train", *args, *dp_args])
    assert run.exit_code == 0, run.output
    privacy = json.loads((out / "config.json").read_text())["privacy"]
    assert privacy["epsilon"] == pytest.approx(3.0, rel=0.05) and privacy["delta"] == 1e-5
    assert privacy["max_physical_batch_size"] == 16
    audit = CliRunner().invoke(
        app, ["membership", str(out), "--data", "digits", "--n", "300", "--out", str(tmp_path / "a")]
    )
    assert audit.exit_code == 0, audit.output
    found = json.loads((tmp_path / "a" / "membership.json").read_text())
    assert found["auc"] < 0.6 and found["baseline"]["auc"] < 0.6  # DP model: little leakage (RMIA and loss)
    assert found["empirical_epsilon"]["lower"] < privacy["epsilon"] and "below the claimed epsilon" in audit.output
    assert (tmp_path / "a" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    before = (out / "config.json").read_bytes()
    bad = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "train", *args, "--force", "--dp", "--epsilon", "-1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "epsilon" in bad.stderr
    assert (out / "config.json").read_bytes() == before  # a refused run leaves the model it would replace
    # --max-physical-batch-size: not given -> the library default; 0 -> each lot in one pass
    assert _dp_hook(3.0, 0.0, 1.0, 0.0, "rdp", None).max_physical_batch_size == PHYSICAL_BATCH
    assert _dp_hook(3.0, 0.0, 1.0, 0.0, "rdp", 0).max_physical_batch_size is None


def test_every_grad_sample_mode_takes_the_same_private_steps(digits):
    """Opacus' per-sample gradient engines (hooks, functorch, expanded weights, ghost clipping)
    compute the same clipped sums, so with one seed they give the same model. Compared over
    three lots (384 examples, lots of 128): equal to float rounding (~1e-7). Over a whole epoch
    at lr 0.5 that rounding grows chaotically (to ~1e-3 of the update, machine-dependent), which
    would hide nothing a wrong clip or noise scale shows at once."""
    trained = {}
    data = digits.train.subset(list(range(384)))
    for mode in GRAD_SAMPLE_MODES:
        model = _model(digits, norm="group")
        hook = DPSGD(noise_multiplier=1.0, grad_sample_mode=mode)
        cfg = TrainConfig(epochs=1, batch_size=128, lr=0.5, optimizer="sgd", schedule="constant", progress=False)
        fit(model, data, None, cfg, [hook])
        hook.release()
        trained[mode] = torch.cat([p.detach().flatten() for p in model.parameters()])
    start = torch.cat([p.detach().flatten() for p in _model(digits, norm="group").parameters()])
    for mode, params in trained.items():
        assert not torch.allclose(params, start), mode  # it trained
        torch.testing.assert_close(params, trained["hooks"], atol=1e-5, rtol=1e-4, msg=mode)
