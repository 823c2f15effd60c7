"""Every Redis key kew-plug writes is named here: `<namespace>:{<queue>}:<kind>[:<id>]`.
The braces make the queue name the hash tag, so all keys of one queue share a Cluster slot
and each script touches one slot."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_NAMESPACE = "kew"


@dataclass(frozen=True, slots=True)
class QueueKeys:
    namespace: str
    queue: str

    @property
    def base(self) -> str:
        return f"{self.namespace}:{{{self.queue}}}"

    @property
    def ready(self) -> str:  # zset: id -> priority/age score
        return f"{self.base}:ready"

    @property
    def due(self) -> str:  # zset: id -> due time ms (deferred and retrying)
        return f"{self.base}:due"

    @property
    def running(self) -> str:  # zset: id -> lease deadline ms
        return f"{self.base}:running"

    @property
    def dead(self) -> str:  # zset: id -> time of death ms
        return f"{self.base}:dead"

    @property
    def wake(self) -> str:  # list of at most 64 tokens that idle workers block on
        return f"{self.base}:wake"

    @property
    def seq(self) -> str:  # counter: submission order and fencing tokens
        return f"{self.base}:seq"

    @property
    def task_prefix(self) -> str:
        return f"{self.base}:t:"

    def task(self, task_id: str) -> str:  # hash: payload, state, attempts, token, result
        return f"{self.task_prefix}{task_id}"

    def breaker(self, name: str) -> str:  # hash: shared circuit-breaker state
        return f"{self.base}:breaker:{name}"

    @property
    def pattern(self) -> str:
        """SCAN pattern for every key of this queue (braces escaped for glob)."""
        return f"{self.namespace}:\\{{{self.queue}\\}}:*"

    @property
    def live_structures(self) -> tuple[str, ...]:
        """Queue-level keys that live as long as the queue and so carry no TTL."""
        return (self.ready, self.due, self.running, self.dead, self.wake, self.seq)


def worker_key(namespace: str, worker_id: str) -> str:  # string: a heartbeat's JSON, with PX
    return f"{namespace}:workers:{worker_id}"


def namespace_pattern(namespace: str) -> str:
    return f"{namespace}:*"
