"""The one training loop: it learns, it is reproducible, it honours budgets and hooks."""

from __future__ import annotations

import time

import pytest
import torch

from trusttango.errors import InputError
from trusttango.evaluate import evaluate
from trusttango.models import build_model, config_for
from trusttango.train import Hook, TrainConfig, accuracy, fit
from trusttango.workflow import train_model


def _model(splits, seed=0):
    return build_model(config_for(splits.train.input_shape, 10, depth=2), seed=seed)


def test_digits_reach_90_percent_quickly(digits, digits_model):
    acc = accuracy(digits_model, digits.test)
    assert acc > 0.90
    result = evaluate(digits_model, digits.test)
    assert result.accuracy == pytest.approx(acc)
    assert sum(map(sum, result.confusion)) == len(digits.test)


def test_same_seed_gives_identical_weights(digits):
    cfg = TrainConfig(epochs=2, batch_size=64, seed=7, progress=False)
    a, b = _model(digits), _model(digits)
    fit(a, digits.train, digits.val, cfg)
    fit(b, digits.train, digits.val, cfg)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=False))
    c = _model(digits)
    fit(c, digits.train, digits.val, TrainConfig(epochs=2, batch_size=64, seed=8, progress=False))
    assert not all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values(), strict=False))


def test_history_records_time_step_loss_and_val(digits):
    history = fit(_model(digits), digits.train, digits.val, TrainConfig(epochs=3, batch_size=64, progress=False))
    assert [r.epoch for r in history.records] == [0, 1, 2]
    assert history.records[-1].step == 3 * ((len(digits.train) + 63) // 64)
    assert history.records[-1].train_loss < history.records[0].train_loss
    assert all(0 <= r.val_accuracy <= 1 for r in history.records)
    assert history.records[0].time_s < history.records[-1].time_s


def test_wall_clock_budget_is_honoured(fmnist_small):
    model = build_model(config_for((1, 28, 28), 10), seed=0)
    start = time.perf_counter()
    history = fit(model, fmnist_small.train, None, TrainConfig(epochs=50, budget_s=1.5, progress=False))
    assert history.stopped == "budget"
    assert time.perf_counter() - start < 1.5 + 10  # one step plus one epoch-end past the budget at most


def test_early_stopping_restores_best(digits):
    class Sabotage(Hook):  # from epoch 2 on, a huge lr ruins the model
        def epoch_end(self, state, record):
            for group in state.optimizer.param_groups:
                group["lr"] = 5.0 if state.epoch >= 1 else group["lr"]

    cfg = TrainConfig(
        epochs=8, batch_size=64, patience=2, schedule="constant", optimizer="sgd", lr=0.05, progress=False
    )
    model = _model(digits)
    history = fit(model, digits.train, digits.val, cfg, hooks=[Sabotage()])
    assert history.stopped in ("early_stopping", "epochs")
    assert accuracy(model, digits.val) == pytest.approx(history.best_val_accuracy)


def test_hooks_rewrite_batches_and_losses(digits):
    seen = {"batches": 0, "extra": 0.0}

    class Flip(Hook):
        def batch(self, state, x, y):
            seen["batches"] += 1
            return x.flip(-1), y

        def loss(self, state, x, y, logits, loss):
            penalty = 1e-3 * logits.pow(2).mean()
            seen["extra"] += float(penalty.detach())
            return loss + penalty

        def epoch_end(self, state, record):
            record.extra["flipped"] = seen["batches"]

        def meta(self):
            return {"flip": True}

    splits = digits
    saved = train_model(splits, TrainConfig(epochs=1, batch_size=64, progress=False), hooks=[Flip()], depth=2)
    assert seen["batches"] == (len(splits.train) + 63) // 64 and seen["extra"] > 0
    assert saved.meta["flip"] is True and saved.meta["history"]["records"][0]["extra"]["flipped"] == seen["batches"]
    assert 0 <= saved.meta["metrics"]["test_accuracy"] <= 1


def test_bad_training_options():
    with pytest.raises(InputError, match="unknown optimizer"):
        TrainConfig(optimizer="lbfgs2")
    with pytest.raises(InputError, match="epochs"):
        TrainConfig(epochs=0)
