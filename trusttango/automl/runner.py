"""The anytime search runner (ChaLearn AutoDL 2019 protocol) on Optuna.

One wall-clock budget T covers the whole run: each trial trains with the remaining time as
its ``TrainConfig.budget_s``, and no trial starts after T. The log time axis of the ALC
rewards the first seconds most, so the run (1) starts with a *quick start*: a narrow model
at half resolution on a small stratified subsample, trained for seconds before any Optuna
trial; (2) then runs the enqueued default configuration (the foundation's small CNN) and
the sampler's trials; (3) scores the current model at *checkpoints* on a geometric time
grid inside epochs as well as after each epoch. A checkpoint measures validation accuracy
(on a fixed stratified probe of at most :data:`PROBE_SIZE` validation examples inside
epochs, the whole validation set after them) and, only when it beats the run's best so
far, emits time-stamped test-set predictions: choices are made on validation data, never on
test data. After each epoch a :class:`_TrialHook` also reports validation accuracy to
Optuna's pruner, raising ``optuna.TrialPruned`` for hopeless learning curves. In
multi-objective mode (NSGA-II; Deb et al. 2002) the objectives are validation accuracy and
accuracy under an FGSM attack (Goodfellow et al. 2015).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import optuna
import torch
from torch import nn

from trusttango.automl.alc import T_DEFAULT, LearningCurve
from trusttango.automl.space import SearchSpace, quick_configs, space_for, suggest, to_configs
from trusttango.automl.storage import fail_stale_trials, open_storage, storage_lock, worker_id
from trusttango.data.base import LabelledDataset, Splits, stratified_indices
from trusttango.errors import InputError, require
from trusttango.evaluate import predict_proba
from trusttango.models import ModelConfig, SavedModel, build_model, config_for, save_model
from trusttango.train import Hook, TrainConfig, TrainState, accuracy, fit
from trusttango.workflow import channel_stats

SAMPLERS = ("random", "tpe", "cmaes", "evolution")
OBJECTIVES = ("accuracy", "accuracy+robustness")
MIN_TRIAL_S = 1.0  # no trial starts with less time left than this
PROBE_SIZE = 1000  # validation examples scored at checkpoints inside epochs
QUICK_SIZE = 8000  # training examples of the quick-start model
QUICK_SHARE, QUICK_MAX_S = 0.05, 30.0  # the quick start's share of T, and its cap in seconds
FIRST_CHECK_S, CHECK_GROWTH = 1.0, 1.5  # checkpoints at ~1 s, then each 1.5x later (and >= 4x its cost)
MIN_CHECK_STEPS = 20  # no checkpoint inside a trial's first steps (an untrained model is not worth a prediction)


def splits_fingerprint(splits: Splits) -> str:
    """16 hex digits of SHA-256 over every label of the three splits and the validation inputs."""
    digest = hashlib.sha256()
    for part in (splits.train.y, splits.val.y, splits.test.y, splits.val.x):
        digest.update(part.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def make_sampler(name: str, seed: int, multi_objective: bool = False) -> optuna.samplers.BaseSampler:
    """``random`` | ``tpe`` | ``cmaes`` (categoricals fall back to independent sampling) | ``evolution`` (NSGA-II)."""
    require(name in SAMPLERS, f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    require(not (multi_objective and name == "cmaes"), "sampler cmaes is single-objective; use evolution or tpe")
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=4, multivariate=True)
    if name == "cmaes":  # its state, read back from the study, is authenticated before it is unpickled
        from trusttango.automl.signed import SignedCmaEsSampler

        return SignedCmaEsSampler(seed=seed, n_startup_trials=2, warn_independent_sampling=False)
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)


@dataclass
class Snapshot:
    """A trained model's weights (CPU) with what rebuilds and describes it."""

    trial: int
    val_accuracy: float
    config: ModelConfig
    train: dict
    params: dict
    state: dict[str, torch.Tensor]
    found_s: float = 0.0  # seconds from the run's start

    def model(self) -> nn.Module:
        model = build_model(self.config, seed=None)
        model.load_state_dict(self.state)
        return model.eval()


@dataclass
class SearchResult:
    """What a run produced: the study, the learning curve, the best and top-k snapshots."""

    study: optuna.Study
    curve: LearningCurve
    best: Snapshot | None
    top: list[Snapshot]
    elapsed_s: float
    multi_objective: bool
    trials_run: int = 0
    robust: dict[int, float] = field(default_factory=dict)
    emissions: list[dict] = field(default_factory=list)  # per prediction: time_s, trial (-1: quick start), val_accuracy


def fgsm_accuracy(model: nn.Module, data: LabelledDataset, eps: float, n: int = 256) -> float:
    """Accuracy on the first ``n`` examples under one FGSM step (Goodfellow et al. 2015, eq. 3)."""
    from trusttango.robust import FGSM, robust_accuracy

    return robust_accuracy(model, data.x[:n], data.y[:n], FGSM(model, eps=eps))


def stratified_subset(data: LabelledDataset, n: int, seed: int = 0) -> LabelledDataset:
    """At most ``n`` examples of ``data``, keeping the class proportions."""
    if n >= len(data):
        return data
    idx, _ = stratified_indices(data.y.numpy(), (n / len(data), 1 - n / len(data)), seed)
    return data.subset(idx)


class _TrialHook(Hook):
    """Anytime checkpoints (inside and after epochs) and learning-curve pruning for one trial
    (``trial`` None: the quick start, not an Optuna trial)."""

    def __init__(
        self, search: AnytimeSearch, trial: optuna.Trial | None, config: ModelConfig, train: dict, params: dict
    ):
        self.search, self.trial, self.config, self.train, self.params = search, trial, config, train, params
        self.best: Snapshot | None = None  # the trial's best epoch (what Optuna scores)

    def _snapshot(self, state: TrainState, val_accuracy: float) -> Snapshot:
        weights = {k: v.detach().cpu().clone() for k, v in state.model.state_dict().items()}
        number = -1 if self.trial is None else self.trial.number
        found = self.search.budget_s - self.search.remaining()
        return Snapshot(number, val_accuracy, self.config, self.train, self.params, weights, found)

    def batch(self, state: TrainState, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if state.step >= MIN_CHECK_STEPS and self.search.checkpoint_due():
            began = time.perf_counter()
            acc = accuracy(state.model, self.search.probe, device=state.device)
            if self.search.beats_best(acc):
                self.search.observe(state.model, self._snapshot(state, acc))
            self.search.checked(time.perf_counter() - began)
        return x, y

    def epoch_end(self, state: TrainState, record) -> None:
        acc = record.val_accuracy
        if acc is None:
            return
        if self.best is None or acc > self.best.val_accuracy:
            self.best = self._snapshot(state, acc)
            if self.search.beats_best(acc):
                began = time.perf_counter()
                self.search.observe(state.model, self.best)
                self.search.checked(time.perf_counter() - began)
        if self.trial is not None and self.search.prune and not self.search.multi_objective:
            self.trial.report(acc, state.epoch)
            if self.trial.should_prune():
                self.search.keep(self.best)
                raise optuna.TrialPruned(f"val accuracy {acc:.4f} at epoch {state.epoch}")
        if self.search.remaining() <= 0:
            state.stop = True


class AnytimeSearch:
    """Search the unified architecture and its training for ``splits`` under budget ``budget_s``.

    ``storage``: an SQLAlchemy URL or ``journal:PATH`` (see :mod:`trusttango.automl.storage`);
    several processes sharing it and ``study_name`` share one study. ``objective``:
    ``accuracy`` or ``accuracy+robustness`` (NSGA-II-style Pareto search; no pruning).
    ``pruner``: default median pruning (Optuna's ``MedianPruner``) of the per-epoch validation accuracy.
    ``quick_start``: train the quick-start model (seconds, not an Optuna trial) before the trials.
    ``artifacts``: a folder (shared by the study's workers) where the weights of every trial that
    becomes the study's best are kept, as a model directory ``trial-<number>`` named by the
    trial's user attribute ``weights``; None keeps none.
    """

    def __init__(
        self,
        splits: Splits,
        budget_s: float = T_DEFAULT,
        sampler: str = "tpe",
        storage: str = "sqlite:///:memory:",
        study_name: str = "automl",
        space: SearchSpace | None = None,
        objective: str = "accuracy",
        prune: bool = True,
        top_k: int = 3,
        fgsm_eps: float = 0.03,
        warm_start: int = 0,
        seed: int = 0,
        device: str = "auto",
        pruner: optuna.pruners.BasePruner | None = None,
        quick_start: bool = True,
        artifacts: str | Path | None = None,
    ) -> None:
        require(budget_s > 0, f"budget must be > 0 seconds, got {budget_s}")
        require(objective in OBJECTIVES, f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
        require(top_k >= 1, f"top_k must be >= 1, got {top_k}")
        self.splits, self.budget_s, self.seed, self.device = splits, float(budget_s), seed, device
        self.space = space or space_for(splits.train)
        self.multi_objective = objective != "accuracy"
        self.prune, self.top_k, self.fgsm_eps, self.warm_start = prune, top_k, fgsm_eps, warm_start
        self.sampler_name, self.storage_url, self.study_name = sampler, storage, study_name
        self.sampler = make_sampler(sampler, seed, self.multi_objective)
        self.pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        self.mean, self.std = channel_stats(splits.train)
        self.quick_start = quick_start
        self.artifacts = None if artifacts is None else Path(artifacts)
        self.probe = stratified_subset(splits.val, PROBE_SIZE, seed)
        self.next_check = FIRST_CHECK_S
        self.start = time.perf_counter()
        self.curve = LearningCurve(budget=self.budget_s)
        self.best: Snapshot | None = None
        self.top: list[Snapshot] = []
        self.robust: dict[int, float] = {}
        self.emissions: list[dict] = []
        self.trials_run = 0

    def remaining(self) -> float:
        return self.budget_s - (time.perf_counter() - self.start)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def checkpoint_due(self) -> bool:
        return self.elapsed() >= self.next_check

    def checked(self, cost_s: float) -> None:
        """Schedule the next checkpoint: ``CHECK_GROWTH`` times later, and at least 4x this one's cost later."""
        now = self.elapsed()
        self.next_check = max(now * CHECK_GROWTH, now + 4 * cost_s)

    def beats_best(self, val_accuracy: float) -> bool:
        return self.remaining() >= 0 and (self.best is None or val_accuracy > self.best.val_accuracy)

    @torch.no_grad()
    def observe(self, model: nn.Module, snap: Snapshot) -> None:
        """A checkpoint's result: if it beats the run's best within T, emit time-stamped test predictions."""
        if not self.beats_best(snap.val_accuracy):
            return
        self.best = snap
        probs = predict_proba(model, self.splits.test).numpy()
        now = self.elapsed()
        if self.curve.add(now, self.splits.test.y.numpy(), probs) is not None:
            self.emissions.append({"time_s": now, "trial": snap.trial, "val_accuracy": snap.val_accuracy})

    def _quick_start(self) -> None:
        """Train the quick-start model on a stratified subsample for a few seconds, with checkpoints."""
        budget = min(self.remaining() - MIN_TRIAL_S, QUICK_SHARE * self.budget_s, QUICK_MAX_S)
        if budget <= 0:
            return
        model_opts, train_opts = quick_configs(self.space)
        opts = {"mean": self.mean, "std": self.std, "modality": self.splits.train.modality, **model_opts}
        cfg = config_for(self.splits.train.input_shape, self.splits.train.num_classes, **opts)
        tc = TrainConfig(**train_opts, budget_s=budget, seed=self.seed, device=self.device, progress=False)
        hook = _TrialHook(self, None, cfg, asdict(tc), {"quick_start": True})
        train = stratified_subset(self.splits.train, QUICK_SIZE, self.seed)
        try:
            fit(build_model(cfg, seed=self.seed), train, self.probe, tc, [hook])
        except InputError:  # diverged: the trials still run
            return

    def keep(self, snap: Snapshot | None) -> None:
        """Offer a trial's best snapshot to the top-k list (for the ensemble)."""
        if snap is None or snap.found_s > self.budget_s:
            return
        self.top = sorted([*self.top, snap], key=lambda s: -s.val_accuracy)[: self.top_k]

    def _objective(self, trial: optuna.Trial) -> float | tuple[float, float]:
        remaining = self.remaining()
        if remaining < MIN_TRIAL_S:
            trial.study.stop()
            raise optuna.TrialPruned("time budget spent")
        self.trials_run += 1
        trial.set_user_attr("worker", worker_id())
        params = suggest(trial, self.space)
        model_opts, train_opts = to_configs(params, self.space)
        opts = {"mean": self.mean, "std": self.std, "modality": self.splits.train.modality, **model_opts}
        cfg = config_for(self.splits.train.input_shape, self.splits.train.num_classes, **opts)
        seed = self.seed + trial.number
        tc = TrainConfig(**train_opts, budget_s=remaining, seed=seed, device=self.device, progress=False)
        model = build_model(cfg, seed=tc.seed)
        hook = _TrialHook(self, trial, cfg, asdict(tc), params)
        try:
            history = fit(model, self.splits.train, self.splits.val, tc, [hook])
        except InputError as err:  # e.g. a sampled lr that makes training diverge: a failed trial, not a failed run
            trial.set_user_attr("error", str(err))
            self.keep(hook.best)
            return (math.nan, math.nan) if self.multi_objective else math.nan
        self.keep(hook.best)
        trial.set_user_attr("epochs_run", len(history.records))
        trial.set_user_attr("stopped", history.stopped)
        if history.best_val_accuracy is None:
            raise optuna.TrialPruned("the budget ran out before the first epoch ended")
        acc = float(history.best_val_accuracy)
        if not self.multi_objective:
            self._keep_weights(trial, hook.best, acc)
            return acc
        robust = fgsm_accuracy(hook.best.model(), self.splits.val, self.fgsm_eps)  # the weights scored by ``acc``
        self.robust[trial.number] = robust
        return acc, robust

    def _keep_weights(self, trial: optuna.Trial, snap: Snapshot | None, value: float) -> None:
        """Save ``snap`` (the weights Optuna scores as ``value``) when they beat every finished
        trial of the study, so that its best trial has its weights whichever worker or run trained it."""
        if self.artifacts is None or snap is None:
            return
        done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if done and value <= max(t.value for t in done):
            return
        meta = {"train": snap.train, "automl": {"trial": trial.number, "params": snap.params, "val_accuracy": value}}
        folder = save_model(SavedModel(snap.model(), snap.config, self.splits.class_names, meta),
                            self.artifacts / f"trial-{trial.number}")  # fmt: skip
        trial.set_user_attr("weights", str(folder.resolve()))

    def study(self) -> optuna.Study:
        """Create or load the shared study, failing the trials of killed local workers. A new
        study first runs the warm-start configurations (if asked), then the default point."""
        directions = ["maximize", "maximize"] if self.multi_objective else ["maximize"]
        storage = open_storage(self.storage_url)
        with storage_lock(self.storage_url):  # workers started together set up the study one at a time
            study = optuna.create_study(
                storage=storage,
                study_name=self.study_name,
                sampler=self.sampler,
                pruner=self.pruner,
                directions=directions,
                load_if_exists=True,
            )
            fail_stale_trials(study, storage)
            if not study.trials:
                self._first_trials(study, storage)
            self._check_compatible(study)
        return study

    def _check_compatible(self, study: optuna.Study) -> None:
        """Every worker of a study searches one space and scores on one split: the first records
        both; a worker with another space, other data or another split is refused in one line."""
        mine = {"splits": splits_fingerprint(self.splits), "space": json.loads(json.dumps(asdict(self.space)))}
        recorded = {key: study.user_attrs.get(key) for key in mine}
        for key in (k for k, v in recorded.items() if v is None):
            study.set_user_attr(key, mine[key])
        name = repr(self.study_name)
        require(
            recorded["splits"] in (None, mine["splits"]),
            f"study {name}: its trials were scored on other data or another split (fingerprint {recorded['splits']}, "
            f"this worker's {mine['splits']}); give every worker the same --data and --split-seed",
        )
        differ = sorted(k for k, v in (recorded["space"] or mine["space"]).items() if v != mine["space"].get(k))
        require(not differ, f"study {name}: searches another space ({', '.join(differ)} differ); give every worker "
                "the same --backbones and --max-epochs, or another --study")  # fmt: skip

    def _first_trials(self, study: optuna.Study, storage: optuna.storages.BaseStorage) -> None:
        """A new study's meta-features and first trials: warm-start configurations, then the default."""
        from trusttango.automl.meta import meta_features, warm_start

        study.set_user_attr("meta_features", meta_features(self.splits.train))
        if self.warm_start:  # experience first: the best configurations of the most similar studies
            study.set_user_attr("warm_start_from", warm_start(study, storage, self.warm_start))
        study.enqueue_trial(self.space.default, skip_if_exists=True)

    def run(self) -> SearchResult:
        """Run trials until the budget is spent; return the :class:`SearchResult`."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = self.study()
        self.start, self.next_check = time.perf_counter(), FIRST_CHECK_S
        if self.quick_start:
            self._quick_start()
        timeout = max(self.remaining() - MIN_TRIAL_S, 1e-3)
        study.optimize(self._objective, timeout=timeout, catch=(RuntimeError,))
        elapsed = self.elapsed()
        return SearchResult(
            study,
            self.curve,
            self.best,
            self.top,
            elapsed,
            self.multi_objective,
            self.trials_run,
            self.robust,
            self.emissions,
        )
