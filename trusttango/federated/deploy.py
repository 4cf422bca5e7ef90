"""A real Flower deployment on this machine: one SuperLink and K SuperNodes as separate OS
processes talking to each other over loopback network sockets (Flower's Deployment Runtime).

Each SuperNode gets ``--node-config "data-path=<client_k.npz> ..."``, so it can read only its
own partition; the run is submitted the way a user would, with ``flwr run`` against the
SuperLink's Control API (a throw-away ``FLWR_HOME`` holds the connection). Everything binds
127.0.0.1. Flower 1.41 serves the Fleet, Control and Runtime APIs over HTTP on one port
(earlier releases used separate gRPC ports 9092/9093/9091).

:class:`LocalDeployment` starts the processes in ``__enter__`` and always stops every one of
them, and every process they spawned (SuperExec, ServerApp, ClientApp), in ``__exit__``: each
SuperNode, and the SuperLink with its SuperExec, is one process group (:class:`ProcessGroups`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from trusttango.errors import InputError, require
from trusttango.federated.config import FedConfig, prepare
from trusttango.federated.history import FedHistory

APP_TOML = """[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "trusttango-fedavg"
version = "1.0.0"
description = "FedAvg / FedSGD with trusttango's training loop"
license = "Apache-2.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "trusttango"

[tool.flwr.app.components]
serverapp = "trusttango.federated.server_app:app"
clientapp = "trusttango.federated.client_app:app"

[tool.flwr.app.config]
"""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_app(folder: Path, cfg: FedConfig) -> Path:
    """A minimal Flower App (``pyproject.toml``) whose components are trusttango's Server/ClientApp
    and whose run config is ``cfg``; the apps themselves are imported from the installed package."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{key} = {json.dumps(value)}" for key, value in cfg.to_run_config().items()]
    (folder / "pyproject.toml").write_text(APP_TOML + "\n".join(lines) + "\n")
    return folder


def _bin(name: str) -> str:
    """A Flower console script of this interpreter's environment."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def flower_env(home: Path | None = None) -> dict[str, str]:
    """This environment with its console scripts first on PATH (Flower starts ``flower-superexec``,
    ``flwr-serverapp``, ``flwr-clientapp`` by name) and, if given, ``FLWR_HOME``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if home is not None:
        env["FLWR_HOME"] = str(home)
    return env


def group_members(pgids: set[int]) -> list[int]:
    """Pids of the live (not zombie) processes whose process group is one of ``pgids`` (Linux:
    read from ``/proc/<pid>/stat``, fields state and pgrp; empty elsewhere)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            state, _, pgrp = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if state != "Z" and int(pgrp) in pgids:
            found.append(int(entry.name))
    return sorted(found)


class ProcessGroups:
    """Commands started as process-group leaders, stopped group by group.

    Each :meth:`spawn` starts a command in a new session, so it leads its own process group and
    every process it starts with a plain ``fork``/``Popen`` (a SuperNode's SuperExec and
    ClientApps, a SuperExec's ServerApp) stays in that group; :meth:`stop` signals whole groups
    (``killpg``), SIGTERM first, then SIGKILL. A process that starts a session of its own leaves
    the group: Flower's SuperLink does so with the SuperExec it launches, which is why
    :class:`LocalDeployment` runs the SuperLink with ``--isolation process`` and spawns that
    SuperExec itself, as a group of its own.
    """

    def __init__(self, logs: Path, env: dict[str, str]) -> None:
        self.logs, self.env = logs, env
        self.leaders: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        """Start ``args`` leading a new session and process group, output to ``<logs>/<name>.log``."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.leaders.append(proc)
        return proc

    def alive(self) -> list[int]:
        """Pids of every live process in the groups started here."""
        return group_members({p.pid for p in self.leaders})

    def kill(self, leader: subprocess.Popen) -> None:
        """SIGKILL the whole group of ``leader`` at once (a crash: no goodbye to anyone)."""
        _killpg(leader.pid, signal.SIGKILL)
        leader.wait()

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every group, SIGKILL what is left after ``grace_s``; reap the leaders."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for leader in self.leaders:
                _killpg(leader.pid, sig)
            deadline = time.monotonic() + grace_s
            while self.alive() and time.monotonic() < deadline:
                for leader in self.leaders:
                    leader.poll()  # reap our own children
                time.sleep(0.1)
            if not self.alive():
                break
        for leader in self.leaders:
            if leader.poll() is None:
                leader.kill()
            leader.wait()

    def tail(self, name: str, chars: int = 600) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class LocalDeployment:
    """A SuperLink and ``cfg.clients`` SuperNodes on 127.0.0.1, one partition per SuperNode.

    >>> with LocalDeployment(FedConfig(data="digits", clients=4, fraction=1.0, min_clients=3)) as fed:
    ...     history = fed.run()

    ``max_retries`` / ``max_wait_s`` bound how long a SuperNode tries to reach the SuperLink.
    Logs of every process are in ``<workdir>/logs``.
    """

    def __init__(self, cfg: FedConfig, max_retries: int = 10, max_wait_s: float = 60.0) -> None:
        require(max_retries >= 0 and max_wait_s > 0, "max_retries must be >= 0 and max_wait_s > 0")
        self.cfg = replace(cfg, workdir=str(Path(cfg.workdir).resolve()))
        self.folder = Path(self.cfg.workdir)
        self.logs = self.folder / "logs"
        self.home = self.folder / "flwr-home"
        self.max_retries, self.max_wait_s = max_retries, max_wait_s
        self.port = 0
        self.superlink: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        self.group = ProcessGroups(self.logs, flower_env(self.home))
        self.run_id: int | None = None
        self._probe: subprocess.Popen | None = None  # a `flwr ls` asking for the run's status

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalDeployment:
        try:
            prepare(self.cfg)
            self.start_superlink()
            for k in range(self.cfg.clients):
                self.start_node(k)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start_superlink(self, timeout_s: float = 60.0) -> None:
        """Start ``flower-superlink`` on a free loopback port, and the SuperExec that launches its
        ServerApps (a process group of its own); wait until the SuperLink accepts connections."""
        self.port = free_port()
        self.superlink = self.group.spawn(
            "superlink",
            [_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(self.port),
             "--isolation", "process", "--disable-runtime-dependency-installation"],
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.superlink.poll() is not None:
                raise RuntimeError(
                    f"flower-superlink exited with {self.superlink.returncode}: {self.group.tail('superlink')}"
                )
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    superexec = [_bin("flower-superexec"), "--insecure", "--runtime-api-address", self.address,
                                 "--parent-pid", str(self.superlink.pid)]  # fmt: skip
                    self.group.spawn("superexec", superexec)
                    return
            time.sleep(0.2)
        raise RuntimeError(f"flower-superlink did not listen on {self.address} within {timeout_s:g} s")

    def start_node(self, k: int) -> subprocess.Popen:
        """Start SuperNode ``k``, holding only ``client_<k>.npz``."""
        args = node_command(
            self.address, self.folder / f"client_{k}.npz", k, self.cfg.clients, self.max_retries, self.max_wait_s
        )
        node = self.group.spawn(f"supernode_{k}", args)
        self.nodes.append(node)
        return node

    def check_nodes(self) -> None:
        """Raise :class:`InputError` in one line if a SuperNode gave up reaching the SuperLink."""
        for k, node in enumerate(self.nodes):
            if node.poll() is not None and (reason := unreachable(self.group.tail(f"supernode_{k}", 4000))):
                raise InputError(f"supernode {k}: cannot reach the SuperLink at {self.address} ({reason})")

    def kill_node(self, k: int) -> None:
        """SIGKILL SuperNode ``k`` and its ClientApp processes mid-run."""
        self.group.kill(self.nodes[k])

    def submit(self) -> int:
        """``flwr run <app> local``: build the FAB and start the run on the SuperLink; its run id."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "{self.address}"\ninsecure = true\n'
        )
        app = write_app(self.folder / "app", self.cfg)
        done = subprocess.run(
            [_bin("flwr"), "run", str(app), "local", "--format", "json"],
            capture_output=True, text=True, env=flower_env(self.home), timeout=600,
        )  # fmt: skip
        try:
            self.run_id = int(json.loads(done.stdout)["run-id"])
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"flwr run failed ({done.returncode}): {(done.stdout + done.stderr)[-500:]}") from None
        return self.run_id

    def _status(self) -> str | None:
        """The run's status from ``flwr ls``, polled without blocking: None until an answer is in."""
        if self._probe is None:
            self._probe = subprocess.Popen(
                [_bin("flwr"), "ls", "local", "--run-id", str(self.run_id), "--format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=flower_env(self.home),
            )  # fmt: skip
            return None
        if self._probe.poll() is None:
            return None
        answer, self._probe = self._probe.communicate()[0], None
        try:
            return str(json.loads(answer)["runs"][0]["status"])
        except (ValueError, KeyError, IndexError):
            return None

    def wait(self, timeout_s: float | None = None, on_round=None) -> FedHistory:
        """Wait until the ServerApp has written ``history.json`` (at most ``timeout_s``, default
        every round's timeout); ``on_round(n)`` is called as round ``n`` finishes (e.g. to kill a
        node mid-run)."""
        history, progress = self.folder / "history.json", self.folder / "rounds.jsonl"
        timeout_s = timeout_s or 120 + self.cfg.rounds * self.cfg.timeout_s
        deadline, seen_rounds, next_probe = time.monotonic() + timeout_s, 0, time.monotonic() + 20
        while time.monotonic() < deadline:
            if history.exists():
                return FedHistory.from_dict(json.loads(history.read_text()))
            if self.superlink is not None and self.superlink.poll() is not None:
                raise RuntimeError(f"flower-superlink died: {self.group.tail('superlink')}")
            self.check_nodes()
            status = self._status() if time.monotonic() > next_probe else None
            if status is not None:
                next_probe = time.monotonic() + 20
                if status.startswith("finished") and not history.exists():
                    raise RuntimeError(f"run {self.run_id} {status} without a history; logs in {self.logs}")
            rounds = len(progress.read_text().splitlines()) if progress.exists() else 0
            while on_round is not None and seen_rounds < rounds:
                on_round(seen_rounds)
                seen_rounds += 1
            time.sleep(0.5)
        raise TimeoutError(f"federated run did not finish within {timeout_s:g} s; logs in {self.logs}")

    def run(self, timeout_s: float | None = None, on_round=None) -> FedHistory:
        """Submit the run and wait for its history."""
        for name in ("history.json", "rounds.jsonl"):
            (self.folder / name).unlink(missing_ok=True)
        self.submit()
        return self.wait(timeout_s, on_round)

    def processes(self) -> list[int]:
        """Pids of every live process of the deployment (SuperLink, SuperNodes, SuperExecs, Apps)."""
        return self.group.alive()

    def stop(self) -> None:
        """Stop every process of the deployment (SIGTERM, then SIGKILL), and a pending status probe."""
        if self._probe is not None and self._probe.poll() is None:
            self._probe.kill()
            self._probe.communicate()
        self._probe = None
        self.group.stop()


def node_command(
    superlink: str, data: Path, k: int = 0, clients: int = 1, max_retries: int = 10, max_wait_s: float = 60.0
) -> list[str]:
    """The ``flower-supernode`` command line of client ``k`` holding only the partition ``data``;
    it gives up reaching ``superlink`` after ``max_retries`` tries or ``max_wait_s`` seconds."""
    node_config = f'partition-id={k} num-partitions={clients} data-path="{Path(data).resolve()}"'
    return [
        _bin("flower-supernode"), "--insecure", "--superlink", superlink, "--node-config", node_config,
        "--host", "127.0.0.1", "--port", str(free_port()),
        "--max-retries", str(max_retries), "--max-wait-time", str(max_wait_s),
    ]  # fmt: skip


def unreachable(log: str) -> str | None:
    """The reason Flower gave for a SuperNode failing to reach its SuperLink (exit code 305), if so."""
    if "could not establish a connection to the SuperLink" not in log:
        return None
    gave_up = next((line.split("Giving up", 1)[1].strip() for line in log.splitlines() if "Giving up" in line), "")
    return gave_up.rstrip(".") or "no connection"


_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # RFC 1123 (an IPv4 address matches too)
HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


def check_address(address: str, what: str = "superlink") -> tuple[str, int]:
    """``HOST:PORT`` (a host name, an IPv4 address or a bracketed IPv6 address, a port in
    1..65535) split into its parts; a one-line :class:`InputError` naming ``what`` otherwise."""
    host, sep, port = address.rpartition(":")
    expected = f"{what}: {address!r} is not HOST:PORT"
    require(bool(sep) and port.isdigit() and 1 <= int(port) <= 65535, f"{expected} (port 1..65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InputError(f"{expected} ({host!r} is not an IPv6 address)") from None
    else:
        require(bool(HOSTNAME.match(host)), f"{expected} ({host!r} is not a host name or IPv4 address)")
    return host, int(port)


def run_supernode(
    superlink: str, data: str | Path, k: int = 0, clients: int = 1, max_retries: int = 10, max_wait_s: float = 60.0
) -> int:
    """Run one SuperNode holding ``data`` against a SuperLink elsewhere (e.g. another machine)
    until it stops; its exit status. Raises :class:`InputError` in one line when it cannot reach
    ``superlink`` within the bounded retries."""
    check_address(superlink)
    require(Path(data).is_file(), f"data: partition file {data} does not exist")
    group = ProcessGroups(Path(tempfile.mkdtemp(prefix="supernode-")), flower_env())
    try:
        node = group.spawn("supernode", node_command(superlink, Path(data), k, clients, max_retries, max_wait_s))
        node.wait()
        reason = unreachable(group.tail("supernode", 4000))
    finally:
        group.stop()
    if reason is not None:
        raise InputError(f"superlink: cannot reach the SuperLink at {superlink} ({reason}); is it running?")
    return node.returncode


def deploy(cfg: FedConfig, timeout_s: float | None = None) -> FedHistory:
    """Run ``cfg`` on a :class:`LocalDeployment` of ``cfg.clients`` SuperNodes and return the history."""
    with LocalDeployment(cfg) as fed:
        return fed.run(timeout_s)
