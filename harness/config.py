"""What one harness run does; plain strings and numbers so children can receive it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

SCENARIOS = ("basic", "retry", "deferred", "breaker")
ROLES = ("mixed", "split")
TASK_KINDS = ("closure", "module")
FAULT_KINDS = ("kill", "pause", "restart", "drop", "failover")
CLUSTER = "redis-cluster"


class ConfigError(ValueError):
    """Bad usage or configuration: the CLI prints it in one line and exits 2."""


def parse_faults(text: str) -> dict[str, int]:
    faults = dict.fromkeys(FAULT_KINDS, 0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, count = part.partition("=")
        if name not in faults or not sep or not count.isdigit():
            raise ConfigError(
                f"bad --faults item {part!r}: expected name=count with name in {FAULT_KINDS}"
            )
        faults[name] = int(count)
    return faults


@dataclass
class RunConfig:
    procs: int = 4
    tasks: int = 1000
    store: str = "fakeredis"
    redis_url: str | None = None
    serializer: str = "cloudpickle"
    breaker: str = "none"
    roles: str = "mixed"
    scenario: str = "basic"
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    queues: int = 1  # tasks spread over this many queues (on a cluster: over its primaries)
    replicas: int = 0  # cluster: every write waits for this many replicas (WAIT)
    failover_lag: float = 0.0  # failover faults: replicas fall this far behind first, s
    seed: int = 0
    timeout: float = 120.0
    task_kind: str = "closure"
    task: str | None = None  # package.module:function, sync, int -> JSON-like value
    concurrency: int = 16
    lease: float = 10.0
    task_ms: float = 0.0  # time each task body takes, so kills and pauses land mid-task
    batch: int = 200
    json_path: str | None = None
    namespace: str | None = None
    keep: bool = False
    progress: bool = True

    def validate(self) -> None:
        if self.procs < 1 or self.tasks < 1:
            raise ConfigError("--procs and --tasks must be at least 1")
        if self.roles == "split" and self.procs < 2:
            raise ConfigError("--roles split needs at least 2 processes (submitters and workers)")
        for name, value, allowed in (
            ("--scenario", self.scenario, SCENARIOS),
            ("--roles", self.roles, ROLES),
            ("--task-kind", self.task_kind, TASK_KINDS),
        ):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        if self.serializer == "pickle" and self.task_kind == "closure":
            raise ConfigError(
                "the pickle serializer cannot carry closures; use --task-kind module "
                "(or cloudpickle/dill, which send the function by value)"
            )
        if self.scenario == "breaker" and self.breaker == "none":
            raise ConfigError("--scenario breaker needs --breaker local or --breaker redis")
        if self.task is not None:
            module, sep, name = self.task.partition(":")
            try:
                fn = getattr(importlib.import_module(module), name) if sep else None
            except (ImportError, AttributeError) as e:
                raise ConfigError(f"--task {self.task!r} cannot be loaded: {e}") from e
            if not callable(fn):
                raise ConfigError(f"--task {self.task!r} is not a package.module:function")
        if self.faults.get("restart") and (self.store != "redis" or self.redis_url):
            raise ConfigError(
                "--faults restart=N needs a server the harness owns: --store redis without "
                "--redis-url (it never restarts a server it did not start)"
            )
        if self.faults.get("drop") and self.store != "redis":
            # fakeredis answers CLIENT KILL by failing every later command, not by closing
            # connections, so only a real server can show a drop.
            raise ConfigError("--faults drop=N needs a real server: --store redis")
        if self.queues < 1:
            raise ConfigError("--queues must be at least 1")
        if self.replicas and self.store != CLUSTER:
            raise ConfigError("--replicas N needs --store redis-cluster")
        if self.failover_lag < 0 or self.failover_lag > 1.5:
            # Longer, and the stopped replica itself is declared failed (node timeout 2 s).
            raise ConfigError("--failover-lag must be between 0 and 1.5 s")
        if self.replicas < 0:
            raise ConfigError("--replicas must be >= 0")
        if self.redis_url and self.store == CLUSTER and "+cluster" not in self.redis_url:
            raise ConfigError("--store redis-cluster takes a redis+cluster://host:port URL")
        if self.faults.get("failover") and (self.store != CLUSTER or self.redis_url):
            raise ConfigError(
                "--faults failover=N needs a cluster the harness owns: --store redis-cluster "
                "without --redis-url"
            )
        if self.task_ms < 0:
            raise ConfigError("--task-ms must be >= 0")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be positive")
