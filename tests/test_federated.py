"""Federated learning: partitions, client update (the one loop), FedAvg weighting, FedSGD,
DP accounting, secret-sharing average, model mismatch, bad input, and a Flower simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from trusttango.data.partition import label_matrix, partition, partition_indices, plot_label_distribution
from trusttango.errors import InputError
from trusttango.federated import FedConfig, simulate, strategies
from trusttango.federated.client_app import local_update, secagg_update
from trusttango.federated.config import build_global_model, client_sizes, load_partition, model_config
from trusttango.federated.server_app import train_config
from trusttango.federated.strategies import dp_epsilon, make_strategy, quantization_levels
from trusttango.models import load_model
from trusttango.privacy.crypto.secret_sharing import secure_average

ROOT = Path(__file__).resolve().parents[1]


def _covers(parts: list[np.ndarray], n: int) -> bool:
    joined = np.concatenate(parts)
    return len(joined) == n and len(np.unique(joined)) == n


@pytest.mark.parametrize("scheme", ["iid", "shards", "dirichlet", "unbalanced"])
def test_partitions_are_disjoint_and_cover_the_data(digits, scheme):
    y = digits.train.y.numpy()
    parts = partition_indices(y, 10, scheme, seed=1, alpha=0.3)
    assert len(parts) == 10 and _covers(parts, len(y)) and min(len(p) for p in parts) >= 1


def test_partition_label_skew_and_sizes(digits, tmp_path):
    def classes_per_client(scheme, **kw):
        counts = label_matrix(partition(digits.train, 20, scheme, seed=0, **kw))
        return float((counts > 0).sum(1).mean()), counts.sum(1)

    iid, _ = classes_per_client("iid")
    shards, _ = classes_per_client("shards")  # 40 shards of ~31 sorted rows, 2 per client
    skewed, _ = classes_per_client("dirichlet", alpha=0.1)
    flat, _ = classes_per_client("dirichlet", alpha=100.0)
    _, sizes = classes_per_client("unbalanced", unbalance=1.0)
    assert iid == 10 and shards <= 4 and skewed < 6 < flat
    assert sizes.max() > 3 * sizes.min()
    png = plot_label_distribution(partition(digits.train, 20, "shards"), tmp_path / "labels.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_partition_bad_input(digits):
    y = digits.train.y.numpy()
    with pytest.raises(InputError, match="clients"):
        partition_indices(y, len(y) + 1)
    with pytest.raises(InputError, match="no data"):
        partition_indices(y[:60], 50, "dirichlet", alpha=0.01)
    with pytest.raises(InputError, match="scheme"):
        partition_indices(y, 4, "random")
    with pytest.raises(InputError, match="fraction"):
        FedConfig(fraction=0.0)


def _content(model_cfg, model, epochs=1, batch=10, lr=0.1) -> RecordDict:
    config = {
        "model": json.dumps(model_cfg.to_dict()),
        "local-epochs": epochs,
        "batch-size": batch,
        "lr": lr,
        "seed": 0,
    }
    return RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(config)})


def test_fedsgd_client_takes_one_full_batch_gradient_step(digits):
    """FedSGD: E = 1, B = inf -> w' = w - lr * grad L(w) over the client's whole data."""
    data = digits.train.subset(np.arange(200))
    model_cfg = model_config(FedConfig(), data)
    model = build_global_model(model_cfg, seed=3)
    reply = local_update(_content(model_cfg, model, batch=0, lr=0.1), data)
    loss = torch.nn.functional.cross_entropy(model(data.x), data.y)
    loss.backward()
    new = reply["arrays"].to_torch_state_dict()
    for name, p in model.named_parameters():
        torch.testing.assert_close(new[name], p.detach() - 0.1 * p.grad, atol=1e-5, rtol=1e-4)
    assert reply["metrics"]["num-examples"] == 200


def test_fedavg_weights_by_client_sample_counts(digits):
    """Flower's FedAvg over our client replies is sum_k n_k/n w_k (McMahan 2017, Alg. 1)."""
    model_cfg = model_config(FedConfig(), digits.train)
    model = build_global_model(model_cfg)
    clients = partition(digits.train, 2, "unbalanced", seed=0)
    replies = [local_update(_content(model_cfg, model), c) for c in clients]
    avg = aggregate_arrayrecords(replies, "num-examples").to_torch_state_dict()
    n = np.array([len(c) for c in clients], dtype=float)
    for name in avg:
        manual = sum(w * r["arrays"].to_torch_state_dict()[name] for w, r in zip(n / n.sum(), replies, strict=True))
        torch.testing.assert_close(avg[name], manual.float(), atol=1e-6, rtol=1e-5)
    assert not torch.allclose(replies[0]["arrays"].to_torch_state_dict()["head.weight"], avg["head.weight"])


def test_client_refuses_a_mismatched_model(digits):
    data = digits.train.subset(np.arange(50))
    model_cfg = model_config(FedConfig(), data)
    model_cfg.num_classes = 5
    with pytest.raises(InputError, match="5 classes"):
        local_update(_content(model_cfg, build_global_model(model_cfg)), data)
    wide = model_config(FedConfig(width=1.0), data)
    content = _content(model_config(FedConfig(), data), build_global_model(wide))
    with pytest.raises(InputError, match="do not match"):
        local_update(content, data)


def test_dp_epsilon_grows_with_rounds_and_shrinks_with_noise():
    base = dict(clients=100, fraction=0.1)
    eps = dp_epsilon(FedConfig(rounds=50, dp_noise=1.0, **base))
    assert 0 < dp_epsilon(FedConfig(rounds=10, dp_noise=1.0, **base)) < eps
    assert dp_epsilon(FedConfig(rounds=50, dp_noise=2.0, **base)) < eps


def test_secret_sharing_average_grade():
    grades = [np.array([2.3, 1.0]), np.array([1.7, 4.0]), np.array([3.0, 5.0]), np.array([1.3, 2.0])]
    result = secure_average(grades, seed=0)
    np.testing.assert_allclose(result.average, np.mean(grades, axis=0), atol=1e-6)
    # every party's published sum and every share looks random: none equals an encoded grade
    encoded = {int(round(g * 1e6)) for row in grades for g in row}
    assert not encoded & {v for p in result.published for v in p}
    # n-1 shares of party 0's grade do not reveal it; all n do
    shares0 = result.shares[0]
    partial = sum(s[0] for s in shares0[1:]) % (2**61 - 1)
    assert partial != int(round(2.3 * 1e6)) and sum(s[0] for s in shares0) % (2**61 - 1) == int(round(2.3 * 1e6))
    assert secure_average(grades, seed=1).published != result.published
    with pytest.raises(InputError, match="at least 2"):
        secure_average([np.array([1.0])])


def test_cli_rejects_bad_federated_input(tmp_path):
    cli = [sys.executable, "-m", "trusttango.cli", "federated", "--out", str(tmp_path)]
    bad = subprocess.run([*cli, "--fraction", "1.5"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "fraction" in bad.stderr
    many = subprocess.run(
        [*cli, "--data", "digits", "--clients", "5000"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert many.returncode == 2 and "clients" in many.stderr


@pytest.mark.slow
def test_flower_simulation_fedavg_learns(tmp_path):
    """Flower simulation engine (Ray), 4 digits clients, C = 0.5, 3 rounds."""
    cfg = FedConfig(
        data="digits", workdir=str(tmp_path), clients=4, fraction=0.5, rounds=3, local_epochs=2, min_clients=2
    )
    history = simulate(cfg)
    assert [r.round for r in history.rounds] == [0, 1, 2, 3]
    model_bytes = sum(
        p.numel() * 4 for p in build_global_model(model_config(cfg, _digits_test(tmp_path))).state_dict().values()
    )
    for r in history.rounds[1:]:  # 2 models down, 2 up (serialised arrays: raw bytes + small headers)
        assert r.clients == 2 and r.bytes_down == r.bytes_up and 2 * model_bytes <= r.bytes_down < 2.1 * model_bytes
    assert history.rounds[-1].accuracy > history.rounds[0].accuracy + 0.2
    assert (tmp_path / "history.png").exists() and (tmp_path / "partition.png").exists()


@pytest.mark.slow
def test_evaluation_every_k_rounds_keeps_the_totals(tmp_path):
    """``eval_every=2`` over 3 rounds: records after rounds 0, 2 and the last (3); round 2's record
    carries the traffic of rounds 1 and 2."""
    cfg = FedConfig(data="digits", workdir=str(tmp_path), clients=4, fraction=0.5, rounds=3, min_clients=2,
                    eval_every=2)  # fmt: skip
    history = simulate(cfg)
    assert [r.round for r in history.rounds] == [0, 2, 3]
    assert history.rounds[1].bytes_down == 2 * history.rounds[2].bytes_down > 0
    with pytest.raises(InputError, match="eval_every"):
        FedConfig(eval_every=0)


def _secagg_sum(updates: list[list[np.ndarray]], sizes: list[int], workflow) -> list[np.ndarray]:
    """What SecAgg+ computes from ``updates`` with Flower's own arithmetic: each client weights
    its update by its quantised ratio n_k / W and quantises it (``secaggplus_mod``), the masks
    cancel in the sum modulo M, and the server dequantises and divides by the summed ratios
    (``SecAggPlusWorkflow``)."""
    from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_combine, factor_extract
    from flwr.common.secure_aggregation.quantization import dequantize, quantize

    q, c, m = workflow.quantization_range, workflow.clipping_range, workflow.modulus_range
    total = None
    for update, n in zip(updates, sizes, strict=True):
        q_ratio = round(n / workflow.max_weight * q)
        quantised = factor_combine(q_ratio, quantize([u * (q_ratio / q) for u in update], c, q))
        quantised = [a.astype(np.int64) for a in quantised]
        total = quantised if total is None else [(t + a) % m for t, a in zip(total, quantised, strict=True)]
    q_total, summed = factor_extract(total)
    return [(v - (len(updates) - 1) * c) * (q / q_total) for v in dequantize(summed, c, q)]


def test_secagg_plus_mean_is_the_weighted_mean_on_very_unequal_partitions():
    """n_k = 300, 1500, 12000: W is the largest partition and c bounds every coordinate, so the
    unmasked SecAgg+ sum over the summed weights is np.average(updates, weights=n_k) up to one
    quantisation step per client, m * 2c / (Q * sum_k n_k / W) (module :mod:`.strategies`)."""
    sizes = [300, 1500, 12000]
    cfg = FedConfig(clients=3, fraction=1.0, min_clients=3, secagg=True)
    strategy = make_strategy(cfg, sizes)
    rng = np.random.default_rng(0)
    updates = [[rng.normal(0, 0.01, (40, 7)), rng.normal(0, 0.01, 7)] for _ in sizes]
    strategy.clip = 2 * max(float(np.abs(a).max()) for u in updates for a in u)
    workflow = strategy.workflow(len(sizes))
    assert workflow.max_weight == 12000 and workflow.quantization_range == quantization_levels(3) == 2**30
    np.random.seed(0)  # Flower's stochastic rounding draws from numpy's global generator
    secure = _secagg_sum(updates, sizes, workflow)
    bound = 3 * 2 * strategy.clip / (workflow.quantization_range * sum(sizes) / 12000)
    for j, got in enumerate(secure):
        expected = np.average(np.stack([u[j] for u in updates]), axis=0, weights=sizes)
        assert np.abs(got - expected).max() <= bound
        plain_mean = np.mean(np.stack([u[j] for u in updates]), axis=0)
        assert np.abs(got - plain_mean).max() > 1000 * bound  # the weights matter at this scale
    # with Flower's default W = 1000 < 12000 the largest client's weighted update leaves [-c, c]
    workflow.max_weight = 1000.0
    clipped = _secagg_sum(updates, sizes, workflow)
    expected = np.average(np.stack([u[0] for u in updates]), axis=0, weights=sizes)
    assert np.abs(clipped[0] - expected).max() > 100 * bound


class _Grid:
    """The node ids a strategy samples from (what ``configure_train`` asks of a grid)."""

    def get_node_ids(self):
        return [11, 12, 13]


def test_secagg_clients_receive_the_local_dp_keys(digits):
    """Under SecAgg+ the training instruction carries the whole server config, so clients train
    with DP-SGD and report its mechanism (local DP is on, as in a plain round)."""
    from flwr.common import FitIns, ndarrays_to_parameters
    from flwr.compat.common.recorddict_compat import fitins_to_recorddict

    cfg = FedConfig(clients=3, fraction=1.0, min_clients=3, secagg=True, local_dp_noise=1.0, local_dp_clip=0.5)
    data = digits.train.subset(np.arange(100))
    model_cfg = model_config(cfg, data)
    model = build_global_model(model_cfg)
    strategy = make_strategy(cfg, [100, 100, 100])
    assert strategy.configure_train(1, ArrayRecord(model.state_dict()), train_config(cfg, model_cfg), _Grid()) == []
    participants = strategy._pending[2]
    parameters = ndarrays_to_parameters([v.numpy() for v in model.state_dict().values()])
    (_, fitins), *_ = participants.configure_fit(1, parameters, None)
    assert fitins.config["local-dp-noise"] == 1.0 and fitins.config["local-dp-clip"] == 0.5
    content = fitins_to_recorddict(FitIns(parameters, fitins.config), keep_input=True)
    reply = secagg_update(content, data, client_id=2, state=RecordDict())
    metrics = dict(reply.config_records["fitres.metrics"])
    assert metrics["client-id"] == 2 and metrics["dp-noise"] == 1.0 and metrics["dp-epsilon"] > 0


def _final_state(folder: Path) -> dict[str, torch.Tensor]:
    return load_model(folder / "model").model.state_dict()


@pytest.mark.slow
def test_secagg_plus_aggregate_equals_plain_fedavg(tmp_path, monkeypatch):
    """SecAgg+ through the one server app: the strategy only ever sees the unmasked sum (one
    distinct aggregate per protocol run), and the final global model equals that of plain
    n_k-weighted FedAvg over the same clients and seed up to quantisation error."""
    distinct: list[int] = []
    run_protocol = strategies.secagg_round

    def recording(*args, **kwargs):
        results = run_protocol(*args, **kwargs)
        distinct.append(len({b"".join(fit.parameters.tensors) for fit in results}))
        return results

    monkeypatch.setattr(strategies, "secagg_round", recording)
    base = dict(data="digits", clients=3, fraction=1.0, rounds=1, min_clients=3)
    plain = simulate(FedConfig(workdir=str(tmp_path / "plain"), **base))
    secure = simulate(FedConfig(workdir=str(tmp_path / "secagg"), secagg=True, **base))
    assert distinct and set(distinct) == {1}
    assert [r.round for r in secure.rounds] == [0, 1] and secure.rounds[1].clients == 3
    assert secure.config["secagg"] and not plain.config["secagg"]
    start = build_global_model(model_config(FedConfig(**base), _digits_test(tmp_path / "plain")), seed=0)
    plain_state, secure_state = _final_state(tmp_path / "plain"), _final_state(tmp_path / "secagg")
    for name, w0 in start.state_dict().items():
        step = (plain_state[name] - w0).abs().max().item()
        assert (secure_state[name] - plain_state[name]).abs().max().item() < max(1e-4, 0.01 * step)
    assert secure.rounds[1].accuracy == pytest.approx(plain.rounds[1].accuracy, abs=0.01)


@pytest.mark.slow
def test_secagg_with_local_dp_reports_every_client_epsilon(tmp_path):
    """SecAgg+ and client DP-SGD together: each client's epsilon reaches the history."""
    cfg = FedConfig(data="digits", workdir=str(tmp_path), clients=3, fraction=1.0, rounds=1, min_clients=3,
                    secagg=True, local_dp_noise=1.0)  # fmt: skip
    history = simulate(cfg)
    assert sorted(history.client_epsilon) == [0, 1, 2] and all(e > 0 for e in history.client_epsilon.values())


def _digits_test(folder: Path):
    return load_partition(str(folder / "test.npz"))


class _Population:
    """A grid of K connected nodes (what DP-FedAvg's ``configure_train`` asks of a grid)."""

    def __init__(self, k: int) -> None:
        self.k = k

    def get_node_ids(self):
        return list(range(100, 100 + self.k))


@pytest.fixture
def run_id(monkeypatch):
    """Flower messages carry the run id its runtime sets; a strategy tested alone needs one."""
    from flwr.supercore.task_identity import TaskIdentity

    for name in ("_task_id", "_run_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, name, 0)


def test_dp_fedavg_samples_each_client_independently(run_id):
    """Poisson sampling, as the accountant assumes: the number of clients per round varies
    (Binomial(K, q): mean Kq, variance Kq(1-q), empty rounds happen); a fixed-size sampler of
    m = qK clients per round, the mechanism the reported epsilon does not cover, fails this."""
    cfg = FedConfig(clients=10, fraction=0.3, dp_noise=1.0)
    strategy = make_strategy(cfg)
    grid, arrays = _Population(10), ArrayRecord({"w": torch.zeros(3)})
    asked = [
        sorted(m.metadata.dst_node_id for m in strategy.configure_train(r, arrays, ConfigRecord(), grid))
        for r in range(1, 401)
    ]
    counts = np.array(strategy.sampled)
    assert counts.tolist() == [len(a) for a in asked]
    assert abs(counts.mean() - 3.0) < 0.25 and 1.5 < counts.var() < 2.8 and (counts == 0).any()
    per_node = np.array([sum(node in a for a in asked) for node in grid.get_node_ids()]) / len(asked)
    assert np.all(np.abs(per_node - 0.3) < 0.08)


def _reply(arrays: dict[str, torch.Tensor]):
    from flwr.app import Message, MessageType, MetricRecord

    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"train-loss": 1.0, "unit-weight": 1})}
    )
    return Message(content=content, dst_node_id=0, message_type=MessageType.TRAIN)


def test_dp_fedavg_releases_the_clipped_sum_plus_noise_over_qk(run_id):
    """McMahan et al. 2018, Alg. 1: w_t + (sum_k clip_C(update_k) + N(0, (sigma C)^2)) / (qK),
    with the fixed denominator qK = 3 while 2 clients replied (a mean over the replies, or noise
    scaled by the replies, fails), and a release also when nobody was sampled."""
    cfg = FedConfig(clients=10, fraction=0.3, dp_noise=1.0, dp_clip=0.5, seed=4)
    strategy = make_strategy(cfg)
    w0 = torch.randn(200, 100, generator=torch.Generator().manual_seed(0))
    strategy.configure_train(1, ArrayRecord({"w": w0}), ConfigRecord(), _Population(10))
    big = torch.full_like(w0, 2.0 / 141.42)  # norm 2 -> clipped to 0.5
    small = torch.full_like(w0, 0.1 / 141.42)  # norm 0.1: kept
    released, metrics = strategy.aggregate_train(1, [_reply({"w": w0 + big}), _reply({"w": w0 + small})])
    noise = (released.to_torch_state_dict()["w"].double() - w0.double()) * 3.0 - (big * 0.25 + small).double()
    assert abs(float(noise.mean())) < 0.02 and float(noise.std()) == pytest.approx(0.5, rel=0.03)
    assert metrics["train-loss"] == pytest.approx(1.0) and strategy.releases == 1
    empty, _ = strategy.aggregate_train(2, [])
    assert float((empty.to_torch_state_dict()["w"] - w0).std()) == pytest.approx(0.5 / 3.0, rel=0.03)


@pytest.mark.parametrize("fraction", [0.3, 1.0])
def test_dp_fedavg_epsilon_is_dp_accountings_for_poisson_sampling(fraction):
    """The central epsilon equals dp-accounting's RDP accountant for the mechanism that runs
    (PoissonSampledDpEvent, add/remove one client) to 3 %; fixed-size sampling without
    replacement (SampledWithoutReplacementDpEvent, replace one client) would need more."""
    from dp_accounting import dp_event
    from dp_accounting.rdp import rdp_privacy_accountant as rdp

    cfg = FedConfig(clients=10, fraction=fraction, dp_noise=1.2, rounds=30)
    gaussian = dp_event.GaussianDpEvent(cfg.dp_noise)
    poisson = rdp.RdpAccountant().compose(dp_event.PoissonSampledDpEvent(fraction, gaussian), cfg.rounds)
    assert dp_epsilon(cfg) == pytest.approx(poisson.get_epsilon(cfg.dp_delta), rel=0.03)
    assert dp_epsilon(cfg, rounds=10) < dp_epsilon(cfg)  # only the releases that ran are composed
    if fraction < 1:
        fixed = rdp.RdpAccountant(neighboring_relation=rdp.NeighborRel.REPLACE_ONE).compose(
            dp_event.SampledWithoutReplacementDpEvent(10, 3, gaussian), cfg.rounds
        )
        assert fixed.get_epsilon(cfg.dp_delta) > 1.2 * dp_epsilon(cfg)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"clients": "10"}, r"run config: clients: Input should be a valid integer, got \"10\""),
        ({"secagg": "yes"}, r"run config: secagg: Input should be a valid boolean"),
        ({"fraction": 0}, r"run config: fraction: C must lie in \(0, 1\]"),
    ],
    ids=["type", "bool", "range"],
)
def test_run_config_is_typed(config, message):
    assert FedConfig.from_run_config({"clients": 4, "fraction": 1, "lr": 1, "num-server-rounds": 3}).lr == 1.0
    with pytest.raises(InputError, match=message):
        FedConfig.from_run_config(config)


def test_clients_json_is_validated(tmp_path):
    (tmp_path / "clients.json").write_text(json.dumps({"sizes": [10, "20"]}))
    with pytest.raises(InputError, match=r"clients.json: sizes.1: Input should be a valid integer"):
        client_sizes(tmp_path)
    (tmp_path / "clients.json").write_text(json.dumps({"size": [10]}))
    with pytest.raises(InputError, match=r"clients.json: size: unknown field"):
        client_sizes(tmp_path)


def test_superlink_address_is_checked_first(tmp_path):
    from trusttango.federated.deploy import check_address

    assert check_address("127.0.0.1:9092") == ("127.0.0.1", 9092)
    assert check_address("[::1]:9092") == ("::1", 9092)
    assert check_address("node-3.example.org:1") == ("node-3.example.org", 1)
    for bad in ("not-an-address", "host:0", "host:70000", ":9092", "[zz]:1", "a b:3"):
        with pytest.raises(InputError, match=r"superlink: .* is not HOST:PORT"):
            check_address(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "federated-node", "--superlink", "not-an-address",
         "--data", str(tmp_path / "none.npz")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: superlink: 'not-an-address' is not HOST:PORT (port 1..65535)"
    ], proc.stderr


def test_cli_federated_writes_its_folder_whole_and_keeps_it(tmp_path):
    """The run works in a staging folder beside --out and takes its place only once complete;
    the records name --out; a second run without --force leaves it byte-identical."""
    out = tmp_path / "fed"
    tiny = ["--clients", "2", "--fraction", "1", "--min-clients", "2", "--rounds", "1", "--train-limit", "200"]
    cli = [sys.executable, "-m", "trusttango.cli", "federated", "--data", "digits", "--out", str(out), *tiny]
    done = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "fed_config.json").read_text())["workdir"] == str(out.resolve())
    assert json.loads((out / "history.json").read_text())["config"]["workdir"] == str(out.resolve())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fed"]  # no staging folder left behind
    before = (out / "history.json").read_bytes()
    again = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 2 and "--force" in again.stderr and (out / "history.json").read_bytes() == before
