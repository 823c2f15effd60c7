"""A throwaway Redis Cluster on loopback ports for tests and the harness. Every node is a
`RedisServer`, so it is started, answered and stopped by PID like the single server."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, NamedTuple

import redis

from harness.servers import RedisServer, free_port, redis_server_binary

__all__ = ["ClusterNode", "LocalCluster"]

HOST = "127.0.0.1"
_SETTLED = frozenset({"myself", "master", "slave"})


class ClusterNode(NamedTuple):
    """One line of CLUSTER NODES, as one node sees it."""

    id: str
    port: int
    flags: frozenset[str]
    primary_id: str | None
    connected: bool

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "noaddr"})


def _ask(port: int, *command: str) -> Any:
    # Short timeouts: a node that was just killed must not stall a polling loop.
    with redis.Redis(
        HOST, port, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
    ) as r:
        return r.execute_command(*command)


def _nodes(asked: int) -> list[ClusterNode]:
    nodes = []
    for line in _ask(asked, "CLUSTER", "NODES").splitlines():
        node_id, address, flags, primary, *_, link = line.split()[:8]
        port = int(address.split("@")[0].rsplit(":", 1)[1])
        primary_id = None if primary == "-" else primary
        flag_set = frozenset(flags.split(","))
        nodes.append(ClusterNode(node_id, port, flag_set, primary_id, link == "connected"))
    return nodes


class LocalCluster:
    """`primaries` primaries with `replicas_per_primary` replicas each, joined by
    `redis-cli --cluster create`; `start` returns only once every node agrees the cluster is
    ok and every replica is in sync, so a test can write at once."""

    def __init__(
        self,
        primaries: int = 3,
        replicas_per_primary: int = 1,
        binary: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.binary = binary or redis_server_binary()
        beside = Path(self.binary or "").with_name("redis-cli")
        self.cli = str(beside) if beside.exists() else shutil.which("redis-cli")
        if self.binary is None or self.cli is None:
            raise FileNotFoundError("redis-server or redis-cli is not installed")
        self.primary_count, self.replicas_per_primary = primaries, replicas_per_primary
        self.extra_args = extra_args
        self.servers: list[RedisServer] = []

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self.servers]

    @property
    def pids(self) -> dict[int, int]:
        """Port -> PID of every node still running."""
        return {s.port: pid for s in self._live() if (pid := s.pid) is not None}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"{h}:{p}" for h, p in self.primaries())

    @property
    def nodes(self) -> list[ClusterNode]:
        for server in self._live():
            try:
                return _nodes(server.port)
            except redis.RedisError:
                continue
        raise RuntimeError("no cluster node answers")

    def start(self, timeout: float = 30.0) -> LocalCluster:
        deadline = time.monotonic() + timeout
        try:
            for _ in range(self.primary_count * (1 + self.replicas_per_primary)):
                self.servers.append(self._launch(deadline))
            self._create(deadline)
            self._wait(self._unsettled, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def primaries(self) -> list[tuple[str, int]]:
        up = {n.port for n in self.nodes if n.is_primary and not n.failed}
        return [(HOST, s.port) for s in self._live() if s.port in up]

    def replicas_of(self, port: int) -> list[int]:
        nodes = self.nodes
        ids = {n.id for n in nodes if n.port == port}
        return [n.port for n in nodes if n.primary_id in ids and not n.failed]

    def failover(
        self,
        primary_port: int,
        how: Literal["force", "kill"] = "force",
        timeout: float = 30.0,
        lag: float = 0.0,
    ) -> int:
        """Promotes a replica of `primary_port`; returns its port once the cluster settled.

        With `lag` (seconds, `how="kill"` only), the replicas first fall behind: they are
        stopped and cut off from the primary, which goes on accepting writes for `lag`
        seconds that no replica receives, and dies before they catch up. That is the window
        in which an asynchronously replicated write is acknowledged and then lost."""
        deadline = time.monotonic() + timeout
        replicas = self.replicas_of(primary_port)
        if not replicas:
            raise ValueError(f"port {primary_port} is not a primary with a replica")
        if lag > 0 and how == "kill":
            stopped = [s for s in self._live() if s.port in replicas]
            for server in stopped:
                server.signal(signal.SIGSTOP)
            try:
                # A stopped replica cannot reconnect, so what the primary writes from here on
                # reaches no replica; what was already in flight still arrives.
                _ask(primary_port, "CLIENT", "KILL", "TYPE", "replica")
                time.sleep(lag)
                next(s for s in self.servers if s.port == primary_port).stop(kill=True)
            finally:
                for server in stopped:
                    server.signal(signal.SIGCONT)
        elif how == "force":
            # FORCE skips the handshake with the primary (the other primaries still vote), so
            # it works the same whether or not the primary is responsive.
            _ask(replicas[0], "CLUSTER", "FAILOVER", "FORCE")
        else:
            next(s for s in self.servers if s.port == primary_port).stop(kill=True)

        def promoted() -> str | None:
            if reason := self._unsettled():
                return reason
            new = {p for _, p in self.primaries()} & set(replicas)
            return None if new else f"no replica of {primary_port} promoted yet"

        self._wait(promoted, deadline)
        return next(p for _, p in self.primaries() if p in replicas)

    def rejoin(self, port: int, timeout: float = 30.0) -> None:
        """Restart a killed node on its port and config: it comes back as a replica of the
        primary that replaced it, as an operator's restart would bring it back."""
        deadline = time.monotonic() + timeout
        server = next(s for s in self.servers if s.port == port)
        server.start(timeout=max(deadline - time.monotonic(), 1.0))
        self._wait(self._unsettled, deadline)

    def key_counts(self) -> dict[int, int]:
        return {port: int(_ask(port, "DBSIZE")) for _, port in self.primaries()}

    def stop(self) -> None:
        for server in self.servers:
            server.close()
        self.servers = []

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> list[RedisServer]:
        return [s for s in self.servers if s.proc is not None and s.proc.poll() is None]

    def _launch(self, deadline: float) -> RedisServer:
        for attempt in range(3):
            port, bus = free_port(), free_port()
            args = [
                *("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf"),
                # An explicit bus port: the default port+10000 can exceed 65535 or be taken.
                *("--cluster-port", str(bus), "--cluster-node-timeout", "2000"),
                # A replica may always stand for election, however long its primary was gone,
                # so a kill-failover never leaves slots unserved.
                *("--cluster-replica-validity-factor", "0"),
                # Diskless full sync otherwise waits 5 s for more replicas before the first sync.
                *("--repl-diskless-sync-delay", "0"),
                # CLUSTER SLOTS (what clients read) lists a replica only once its offset is
                # past 0, which on an idle primary takes the first replication ping.
                *("--repl-ping-replica-period", "1", *self.extra_args),
            ]
            server = RedisServer(port, binary=self.binary, extra_args=tuple(args))
            try:
                return server.start(timeout=max(deadline - time.monotonic(), 1.0))
            except RuntimeError:
                # A port was taken between free_port() and the bind, maybe by a sibling node.
                server.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _create(self, deadline: float) -> None:
        cmd = [str(self.cli), "--cluster", "create", *(f"{HOST}:{p}" for p in self.ports)]
        cmd += ["--cluster-replicas", str(self.replicas_per_primary), "--cluster-yes"]
        timeout = max(deadline - time.monotonic(), 1.0)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"redis-cli --cluster create failed ({done.returncode}):\n{tail}")

    def _unsettled(self) -> str | None:
        """Why the cluster is not yet fit for a test, or None: every live node says ok, sees
        every other live node healthy and connected, all views agree, replicas are in sync."""
        live = {s.port for s in self._live()}
        views = []
        for port in sorted(live):
            try:
                if "cluster_state:ok" not in _ask(port, "CLUSTER", "INFO"):
                    return f"{port}: cluster_state not ok"
                seen = [n for n in _nodes(port) if not n.failed]
                info = _ask(port, "INFO", "replication")
                slots = _ask(port, "CLUSTER", "SLOTS")
            except redis.RedisError as e:
                return f"{port}: {e}"
            if info["role"] == "slave" and info["master_link_status"] != "up":
                return f"{port}: replica link not up"
            if {n.port for n in seen} != live:
                return f"{port} sees {sorted(n.port for n in seen)}, live are {sorted(live)}"
            if any(n.flags - _SETTLED or not n.connected for n in seen):
                return f"{port} sees a node in handshake or disconnected"
            listed = {r[1] for entry in slots for r in entry[3:]}
            if listed != {n.port for n in seen if not n.is_primary}:
                return f"{port} does not list every replica in CLUSTER SLOTS yet"
            views.append({(n.id, n.is_primary, n.primary_id) for n in seen})
        return "nodes disagree on roles" if any(v != views[0] for v in views) else None

    @staticmethod
    def _wait(check: Callable[[], str | None], deadline: float) -> None:
        while (reason := check()) is not None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster did not settle: {reason}")
            # Polling external servers that converge through gossip; no event to wait on.
            time.sleep(0.1)
