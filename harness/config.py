"""What one harness run does; plain strings and numbers so children can receive it."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace

SCENARIOS = ("basic", "retry", "deferred", "breaker", "long", "cancel", "cron")
ROLES = ("mixed", "split")
TASK_KINDS = ("closure", "module")
FAULT_KINDS = ("kill", "pause", "restart", "drop", "failover", "stop", "freeze")
#: Faults that disrupt a worker or the server; "stop" (a graceful SIGTERM of one worker,
#: which must release what it holds) is part of every default run and disrupts nothing.
DISRUPTIVE = ("kill", "pause", "restart", "drop", "failover")
DEFAULT_FAULTS = {**dict.fromkeys(FAULT_KINDS, 0), "stop": 1}
CLUSTER = "redis-cluster"


class ConfigError(ValueError):
    """Bad usage or configuration: the CLI prints it in one line and exits 2."""


def parse_faults(text: str) -> dict[str, int]:
    faults = dict(DEFAULT_FAULTS)
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
    faults: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_FAULTS))
    queues: int = 1  # tasks spread over this many queues (on a cluster: over its primaries)
    replicas: int = 0  # cluster: every write waits for this many replicas (WAIT)
    failover_lag: float = 0.0  # failover faults: replicas fall this far behind first, s
    seed: int = 0
    timeout: float = 120.0
    task_kind: str = "closure"
    task: str | None = None  # package.module:function, sync, int -> JSON-like value
    concurrency: int = 16
    # None: derived once in resolve(): a 2 s lease, so recover() runs mid-run; bodies of
    # 2 ms with disruptive faults, so kills and pauses land mid-task.
    lease: float | None = None
    task_ms: float | None = None
    result_ttl: float = 600.0  # the harness's own bounds, checked on the raw server
    dead_ttl: float = 1800.0
    batch: int = 200
    json_path: str | None = None
    html: str | None = None  # write the run's picture (harness/html.py) to this path
    namespace: str | None = None
    keep: bool = False
    progress: bool = True
    resolved: bool = False

    def resolve(self) -> RunConfig:
        """This configuration with its defaults derived, validated once (both `harness.run`
        and the CLI come through here)."""
        if self.resolved:
            return self
        faults = {**DEFAULT_FAULTS, **self.faults}  # the graceful stop unless stop=0
        disruptive = any(faults[k] for k in DISRUPTIVE)
        lease = self.lease
        if lease is None:
            lease = 2.0
        task_ms = self.task_ms if self.task_ms is not None else (2.0 if disruptive else 0.0)
        out = replace(self, faults=faults, lease=lease, task_ms=task_ms, resolved=True)
        out.validate()
        return out

    @property
    def lease_s(self) -> float:
        assert self.lease is not None, "resolve() first"
        return self.lease

    @property
    def body_ms(self) -> float:
        assert self.task_ms is not None, "resolve() first"
        return self.task_ms

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
        if self.task_ms is not None and self.task_ms < 0:
            raise ConfigError("--task-ms must be >= 0")
        if self.lease is not None and self.lease <= 0:
            raise ConfigError("--lease must be positive")
        if self.result_ttl <= 0 or self.dead_ttl <= 0:
            raise ConfigError("result_ttl and dead_ttl must be positive")
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ConfigError(f"unknown faults {sorted(unknown)}: expected {FAULT_KINDS}")
        if self.timeout <= 0:
            raise ConfigError("--timeout must be positive")
