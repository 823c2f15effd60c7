"""Replica acknowledgement: after a write, `WAIT replicas timeout` on the very connection
that wrote, so a call succeeds only once enough replicas hold it. Used by the Pipe's script
calls on a single server and on every node of a cluster."""

from __future__ import annotations

from typing import Any

from kew_plug.errors import InvalidArgument, StoreUnavailable


class ReplicationShortfall(StoreUnavailable):
    """A script ran on the primary but too few replicas confirmed it; `reply` is what the
    script returned, so a caller can undo what it must not keep (claims)."""

    def __init__(self, reply: Any, message: str) -> None:
        super().__init__(message)
        self.reply = reply


class ReplicaWait:
    """After a write, `WAIT replicas timeout` on the same connection: success is reported
    only once `replicas` replicas hold the write."""

    def __init__(self, replicas: int, timeout: float, target: str) -> None:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise InvalidArgument(f"replicas must be an int >= 0, got {replicas!r}")
        if not isinstance(timeout, int | float) or not timeout > 0:
            raise InvalidArgument(f"replica_timeout must be a number > 0, got {timeout!r}")
        self.replicas = replicas
        self.timeout_ms = max(1, round(timeout * 1000))
        self.target = target

    @property
    def command(self) -> tuple[Any, ...]:
        return ("WAIT", self.replicas, self.timeout_ms)

    def check(self, acked: Any, reply: Any) -> None:
        if int(acked) < self.replicas:
            raise ReplicationShortfall(
                reply,
                f"Redis at {self.target}: write reached {int(acked)} of {self.replicas} "
                f"replicas within {self.timeout_ms} ms; it is on the primary but may be lost "
                "if the primary fails now",
            )
