"""Federated learning as a real deployment (a SuperLink and SuperNodes as separate processes on
127.0.0.1) and with local DP-SGD on the clients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict

from trusttango.federated import FedConfig, simulate
from trusttango.federated.client_app import client_seed, local_update
from trusttango.federated.config import build_global_model, model_config, save_npz
from trusttango.federated.deploy import LocalDeployment, free_port
from trusttango.federated.strategies import dp_epsilon
from trusttango.privacy.dp.accountants import composed_epsilon

ROOT = Path(__file__).resolve().parents[1]
FULL = os.environ.get("TRUSTTANGO_FULL") == "1"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_deployment_survives_a_killed_supernode_and_leaves_no_process(tmp_path):
    """SuperLink + K SuperNodes over loopback sockets; SuperNode K-1 is SIGKILLed after round 1,
    the run completes its rounds with the other K-1 (min clients K-1) and learns; afterwards no
    process of the deployment (SuperLink, SuperNodes, SuperExecs, Server/ClientApps) is left.
    The round after the kill waits for the SuperLink to declare the node gone (Flower's heartbeat:
    up to 2 x 30 s), then goes on with the replies it has."""
    k, rounds = (4, 3) if FULL else (3, 2)
    cfg = FedConfig(
        data="digits", workdir=str(tmp_path), clients=k, fraction=1.0, rounds=rounds, min_clients=k - 1,
        local_epochs=2, timeout_s=300,
    )  # fmt: skip
    seen: set[int] = set()
    fed = LocalDeployment(cfg, max_retries=5, max_wait_s=30)

    def on_round(n: int) -> None:
        seen.update(fed.processes())
        if n == 1:
            fed.kill_node(k - 1)

    with fed:
        commands = [" ".join(map(str, node.args)) for node in fed.nodes]
        history = fed.run(on_round=on_round)
        seen.update(fed.processes())
        assert fed.superlink.poll() is None and fed.address.startswith("127.0.0.1:")
    # each SuperNode was told about its own partition file only
    for i, command in enumerate(commands):
        assert f"client_{i}.npz" in command and all(f"client_{j}.npz" not in command for j in range(k) if j != i)
    assert [r.round for r in history.rounds] == list(range(rounds + 1))
    assert history.rounds[1].clients == k and history.rounds[-1].clients == k - 1
    assert history.rounds[-1].accuracy > history.rounds[0].accuracy + 0.2
    assert len(seen) > k + 1  # the SuperExecs and App processes were tracked too
    assert not [pid for pid in seen if _alive(pid)] and fed.processes() == []
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", fed.port)) != 0  # the SuperLink no longer listens


def test_supernode_that_cannot_reach_the_superlink_gives_up_with_one_line(digits, tmp_path):
    data = tmp_path / "client_0.npz"
    save_npz(digits.train.subset(np.arange(50)), data)
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "trusttango.cli", "federated-node", "--superlink", address, "--data", str(data),
         "--max-retries", "1", "--max-wait", "3"],
        capture_output=True, text=True, cwd=ROOT, timeout=180,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
    assert "cannot reach the SuperLink" in lines[0] and address in lines[0]
    assert time.monotonic() - start < 120  # bounded retry, not forever


def _content(model_cfg, model, sigma: float, clip: float = 1.0) -> RecordDict:
    config = {"model": json.dumps(model_cfg.to_dict()), "local-epochs": 1, "batch-size": 10, "lr": 0.1, "seed": 0,
              "local-dp-noise": sigma, "local-dp-clip": clip, "dp-delta": 1e-5, "server-round": 1}  # fmt: skip
    return RecordDict({"arrays": ArrayRecord(model.state_dict()), "config": ConfigRecord(config)})


def _moved(reply: RecordDict, model: torch.nn.Module) -> float:
    new = reply["arrays"].to_torch_state_dict()
    return float(sum((new[n] - p.detach()).norm() ** 2 for n, p in model.named_parameters()) ** 0.5)


def test_client_dp_sgd_clips_adds_noise_and_reports_epsilon(digits):
    """Local DP-SGD (Abadi et al. 2016) through trusttango.privacy.dp: Poisson lots of rate
    B/n, the reported epsilon is the RDP accountant's for (sigma, q, steps), and clipping bounds
    the update: each step moves the weights by at most lr * (C * |lot| + noise) / L."""
    data = digits.train.subset(np.arange(200))
    model_cfg = model_config(FedConfig(), data)
    model = build_global_model(model_cfg, seed=1)
    plain = local_update(_content(model_cfg, model, 0.0), data)
    assert "dp-epsilon" not in plain["metrics"]
    private = local_update(_content(model_cfg, model, 1.0), data, client_id=3)
    m = private["metrics"]
    assert m["client-id"] == 3 and m["dp-sample-rate"] == pytest.approx(10 / 200) and m["dp-steps"] == 20
    assert m["dp-epsilon"] == pytest.approx(composed_epsilon([(1.0, 0.05, 20)], 1e-5)) and 0 < m["dp-epsilon"]
    # tiny clip and almost no noise: the update shrinks to <= lr * C per expected-lot step
    clipped = local_update(_content(model_cfg, model, 1e-4, clip=0.01), data)
    assert _moved(clipped, model) < 0.1 * 0.01 * 20 * 2 < 0.2 * _moved(plain, model)
    assert _moved(private, model) != pytest.approx(_moved(plain, model), rel=0.05)


def test_each_client_and_round_trains_from_its_own_seed(digits):
    """Fresh seeds: the same (client, round) reproduces its update exactly; another client or
    another round draws other lots and noise (a seed shared by every client fails this)."""
    data = digits.train.subset(np.arange(100))
    model_cfg = model_config(FedConfig(), data)
    model = build_global_model(model_cfg, seed=1)

    def update(client: int, server_round: int) -> torch.Tensor:
        content = _content(model_cfg, model, 1.0)
        content["config"]["server-round"] = server_round
        reply = local_update(content, data, client_id=client)["arrays"].to_torch_state_dict()
        return torch.cat([v.flatten() for v in reply.values()])

    first = update(0, 1)
    assert torch.equal(first, update(0, 1))
    assert not torch.allclose(first, update(1, 1)) and not torch.allclose(first, update(0, 2))
    seeds = {client_seed(0, k, r) for k in range(50) for r in range(200)}
    assert len(seeds) == 50 * 200  # no two (client, round) pairs share a seed (7919 k + r would at r = 7919)


@pytest.mark.slow
def test_dp_fedavg_simulation_reports_central_and_per_client_epsilon(tmp_path):
    """DP-FedAvg (Poisson sampling at q = 1: every client every round) plus local DP-SGD on every
    client in one run: the client-level (epsilon, delta) and each client's epsilon composed over
    its 2 rounds, both in the history and its summary."""
    cfg = FedConfig(
        data="digits", workdir=str(tmp_path), clients=4, fraction=1.0, rounds=2, min_clients=4, dp_noise=0.3,
        local_dp_noise=1.0,
    )  # fmt: skip
    history = simulate(cfg)
    assert len(history.rounds) == 3 and all(r.clients == 4 for r in history.rounds[1:])
    assert history.epsilon == pytest.approx(dp_epsilon(cfg)) and 0 < history.epsilon < float("inf")
    assert history.sampled == [4, 4] and "Poisson sampling of clients at q = 1.0" in history.summary()
    assert "client DP-SGD epsilon" in history.summary()
    assert sorted(history.client_epsilon) == [0, 1, 2, 3]
    for k, eps in history.client_epsilon.items():
        n = len(np.load(tmp_path / f"client_{k}.npz")["y"])
        steps = -(-n // 10)  # one epoch of expected lots of B = 10
        assert eps == pytest.approx(composed_epsilon([(1.0, 1 / steps, steps)] * 2, cfg.dp_delta), rel=1e-6)
        assert eps > composed_epsilon([(1.0, 1 / steps, steps)], cfg.dp_delta)
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["epsilon"] == history.epsilon and saved["delta"] == 1e-5 and len(saved["client_epsilon"]) == 4
