"""RedisStore: the Store contract on Redis, one Lua script per operation, every key of a
queue under one hash tag. Works on redis-py's asyncio client and on fakeredis."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis import exceptions as rex
from redis.asyncio.cluster import RedisCluster
from redis.commands.core import AsyncScript

from kew_plug import validate
from kew_plug.backends.redis.blocking import Abandoned, Blocking
from kew_plug.backends.redis.cluster import SCHEME as CLUSTER_SCHEME
from kew_plug.backends.redis.cluster import (
    ClusterRouter,
    cluster_client,
    parse_cluster_url,
    router_for,
)
from kew_plug.backends.redis.errors import describe_target, translated
from kew_plug.backends.redis.inspection import RedisInspection, text
from kew_plug.backends.redis.keys import (
    DEFAULT_NAMESPACE,
    FIELD,
    QueueKeys,
    payload_chunks,
)
from kew_plug.backends.redis.pipe import Pipe, PipeScript, Sender
from kew_plug.backends.redis.replication import ReplicationShortfall, ReplicaWait
from kew_plug.backends.redis.scripts import KIND_CODE, source
from kew_plug.backends.redis.sync_pipe import SyncPipes
from kew_plug.errors import Closed, InvalidArgument, QueueFull, StoreUnavailable
from kew_plug.interfaces import Breaker, Store
from kew_plug.models import (
    CancelOutcome,
    Claim,
    ClaimBatch,
    EnqueueReport,
    NewTask,
    Outcome,
    OutcomeKind,
    QueueStats,
    RecoverReport,
    TaskRecord,
    TaskState,
    Wakeup,
    clip_traceback,
)

T = TypeVar("T")
DAY = 86400.0


class RedisStore(RedisInspection, Store):
    networked = True
    hands_off = True

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        result_ttl: float = 3600.0,
        dead_ttl: float = 7 * DAY,
        backstop_ttl: float = 7 * DAY,
        owns_client: bool = False,
        pipe: Pipe | None = None,
        blocking: Blocking | None = None,
        sync: SyncPipes | None = None,
        router: ClusterRouter | None = None,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        self.client = client
        self.namespace = validate.name("namespace", namespace)
        self.result_ttl_ms = int(result_ttl * 1000)
        self.dead_ttl_ms = int(dead_ttl * 1000)
        # A payload outlives its longest defer by this much even if nothing ever settles it.
        self.backstop_ms = int(backstop_ttl * 1000)
        # The seq counter outlives every task hash it numbered (see keep_seq in prelude.lua).
        self.seq_ttl_ms = 2 * (self.backstop_ms + max(self.result_ttl_ms, self.dead_ttl_ms))
        self.target = describe_target(client)
        self._owns_client = owns_client
        self.closed = False
        self._keys: dict[str, QueueKeys] = {}
        self._pipe = pipe
        if router is None and isinstance(client, RedisCluster):
            router = router_for(client)
        self._router = router
        self._blocking = blocking
        # The reply of a worker's wait that its caller gave up (see blocking.py): it may
        # carry a record popped from the worker's inbox, which the next wait (or the
        # withdraw) of that worker returns.
        self._abandoned: dict[tuple[str, str], asyncio.Future[Any]] = {}
        send: Sender | None = router if router is not None else pipe
        wait = ReplicaWait(replicas, replica_timeout, self.target) if replicas else None
        for conn in (pipe, router):
            if wait is not None and conn is not None:
                conn.timeout = max(conn.timeout, replica_timeout + 5.0)
        if wait is not None and send is None:
            # WAIT counts the writes of its own connection; a pooled client cannot promise
            # the script ran on the same one.
            raise InvalidArgument("replicas=N needs a redis:// or redis+cluster:// store URL")
        self.replicas = replicas
        # A hand-off reaches its worker before WAIT could confirm the write: after a
        # failover the retried submit would store the task again, and it would run twice.
        self.hands_off = type(self).hands_off and not replicas
        # Blocking submits skip WAIT and the cluster's routing: a plain server only.
        self._sync = sync if router is None and not replicas else None
        self.enqueues_blocking = self._sync is not None
        # Per (queue, worker): our monotonic clock just before its last offering claim, and
        # the server's clock (ms) when the claim ran; hand-offs are timed against them.
        self._offered: dict[tuple[str, str], tuple[float, int]] = {}
        self._scripts: dict[str, AsyncScript | PipeScript] = {}
        scripts = ("enqueue", "claim", "renew", "settle", "release", "recover", "requeue")
        for name in (*scripts, "withdraw", "cancel", "watch"):
            script = client.register_script(source(name))
            # Every script writes. Claims and renewals wait too: a claim the new primary
            # never saw would hand the task to a second worker after a failover.
            self._scripts[name] = (
                script if send is None else PipeScript(send, source(name), script.sha, wait)
            )

    @classmethod
    def from_url(cls, url: str, *, fast: bool = True, **options: Any) -> RedisStore:
        """`redis://[user:password@]host:port/db`, `rediss://` for TLS, `unix:///path`, or
        `redis+cluster://host:port[,host:port...]` for a Redis Cluster (seed nodes).
        With `fast`, script calls (every task operation) use a lean pipelined connection
        of their own; everything else uses redis-py."""
        if url.startswith(CLUSTER_SCHEME):
            seeds, found = parse_cluster_url(url)
            user, password = found.pop("username", None), found.pop("password", None)
            cluster = cluster_client(seeds, user, password)
            return cls(cluster, owns_client=True, **{**found, **options})
        _check_database(url)
        client = aioredis.Redis.from_url(url, decode_responses=False, retry=None)
        # TLS options in a rediss:// URL (certificates, checks) are redis-py's to honour.
        lean = fast and not url.startswith("rediss://")
        if not lean:
            return cls(client, owns_client=True, **options)
        pipe, blocking, sync = Pipe(url), Blocking(url), SyncPipes(url)
        return cls(client, owns_client=True, pipe=pipe, blocking=blocking, sync=sync, **options)

    def keys(self, queue: str) -> QueueKeys:
        k = self._keys.get(queue)
        if k is None:
            k = self._keys[queue] = QueueKeys(self.namespace, queue)
        return k

    def shared_breaker(self, name: str, **options: Any) -> Breaker:
        from kew_plug.backends.redis.breaker import RedisBreaker

        return RedisBreaker(self.client, self.keys(name).breaker("default"), **options)

    async def ping(self) -> None:
        """Fail now, in one line, if the server cannot be reached or refuses us."""
        await self._again(self.client.ping)

    async def _again(self, op: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent operation, once more on a connection error: after a server
        restart or a CLIENT KILL the pool hands out dead connections once each."""
        self._check_open()
        with translated(self.target):
            try:
                return await op()
            except (rex.ConnectionError, rex.TimeoutError):
                return await op()

    async def _run(self, name: str, keys: list[str], args: list[Any], again: bool = False) -> Any:
        """One script call. Only idempotent scripts (`again=True`) are retried: a claim or
        an enqueue whose reply was lost must not run twice."""
        self._check_open()
        script = self._scripts[name]
        if again:
            return await self._again(lambda: script(keys=keys, args=args))
        with translated(self.target):
            return await script(keys=keys, args=args)

    async def enqueue(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        keys, args = self._enqueue_call(queue, items, max_size)
        reply = await self._run("enqueue", keys, args)
        return _enqueue_report(queue, items, max_size, reply)

    def enqueue_blocking(
        self, queue: str, items: Sequence[NewTask], max_size: int | None = None
    ) -> EnqueueReport:
        self._check_open()
        if self._sync is None:
            return super().enqueue_blocking(queue, items, max_size)
        keys, args = self._enqueue_call(queue, items, max_size)
        script = self._scripts["enqueue"]
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        with translated(self.target):
            try:
                reply = self._sync.execute(command)
            except rex.NoScriptError:
                self._sync.execute(("SCRIPT", "LOAD", source("enqueue")))
                reply = self._sync.execute(command)
        return _enqueue_report(queue, items, max_size, reply)

    def _enqueue_call(
        self, queue: str, items: Sequence[NewTask], max_size: int | None
    ) -> tuple[list[str], list[Any]]:
        k = self.keys(queue)
        keys = [k.ready, k.due, k.wake, k.seq, k.idle, k.running, k.inbox_prefix]
        keys += [k.task(i.id) for i in items]
        unique = all(i.new_id for i in items)
        args: list[Any] = [-1 if max_size is None else max_size, self.backstop_ms, self.seq_ttl_ms]
        args.append(1 if unique else 0)
        for i in items:
            chunks = payload_chunks(i.payload)
            args += [i.id, i.priority, i.delay_ms, i.max_attempts, len(chunks), *chunks]
        return keys, args

    async def claim(self, queue: str, worker: str, limit: int, lease_ms: int) -> ClaimBatch:
        return await self._claim(queue, worker, limit, lease_ms, None)

    async def claim_and_offer(
        self, queue: str, worker: str, limit: int, lease_ms: int, offer_ms: int
    ) -> ClaimBatch:
        return await self._claim(queue, worker, limit, lease_ms, offer_ms)

    async def _claim(
        self, queue: str, worker: str, limit: int, lease_ms: int, offer_ms: int | None
    ) -> ClaimBatch:
        k = self.keys(queue)
        keys = [k.ready, k.due, k.running, k.task_prefix, k.wake, k.idle, k.inbox(worker)]
        # A hand-off popped by a wait given up is this worker's already: it takes a slot.
        late = await self._late(queue, worker)
        try:
            offering = offer_ms is not None and self.hands_off
            limit = limit if late is None else max(0, limit - 1)
            args = [limit, lease_ms, worker, 1 if offering else 0, offer_ms or 0]
            before = time.monotonic()
            reply = await self._run("claim", keys, args)
            if offering:
                self._offered[(queue, worker)] = (before, int(reply[3]))
        except BaseException as e:
            if late is not None:  # still ours: the next wait or claim returns it
                self._abandoned[(queue, worker)] = _resolved([k.inbox(worker), late])
            if not isinstance(e, ReplicationShortfall):
                raise
            # The claims exist on the primary only. Handed out, they could run twice after a
            # failover; kept, they would burn an attempt each. Given back, they cost nothing.
            unsure = _claims(e.reply)
            if unsure:
                with contextlib.suppress(StoreUnavailable):
                    await self.release(queue, unsure)
            raise
        next_due = int(reply[0])
        claims = _claims(reply)
        if late is not None:
            claims.insert(0, _handed(late, int(reply[3])))
        return ClaimBatch(claims, None if next_due < 0 else next_due, int(reply[1]), int(reply[2]))

    async def wait(self, queue: str, timeout: float) -> bool:
        key = self.keys(queue).wake
        got = await self._bzpopmin([key], timeout, _ignore)
        return got is not None

    async def wait_handed(self, queue: str, worker: str, timeout: float) -> Wakeup:
        k = self.keys(queue)
        at, server_ms = self._offered.get((queue, worker), (float("-inf"), 0))
        inbox = k.inbox(worker)
        late = await self._late(queue, worker)
        if late is not None:
            return Wakeup(True, [_handed(late, server_ms)], at)

        def abandoned(reply: asyncio.Future[Any]) -> None:
            self._abandoned[(queue, worker)] = reply

        got = await self._bzpopmin([inbox, k.wake], timeout, abandoned)
        if got is None:
            return Wakeup(False)
        if text(got[0]) != inbox:
            return Wakeup(True)
        return Wakeup(True, [_handed(cast(bytes, got[1]), server_ms)], at)

    async def _late(self, queue: str, worker: str) -> bytes | None:
        """The inbox record, if any, popped by this worker's last wait after it was given
        up. That wait was unblocked when it was given up: its reply is in or on its way."""
        reply = self._abandoned.pop((queue, worker), None)
        if reply is None:
            return None
        try:
            got = await asyncio.shield(reply)
        except asyncio.CancelledError:
            # Kept even when it came in the turn we were cancelled: it may hold a record
            # already popped for us, for the next wait, claim or withdraw.
            if not reply.cancelled():
                self._abandoned[(queue, worker)] = reply
            raise
        except (rex.RedisError, OSError):
            return None  # lost with its connection; a popped record waits for its lease
        if got is None or text(got[0]) != self.keys(queue).inbox(worker):
            return None
        return cast(bytes, got[1])

    async def _bzpopmin(self, keys: list[str], timeout: float, abandoned: Abandoned) -> Any:
        """BZPOPMIN on the lean blocking connections when this store has them, else on
        redis-py (whose cancelled waits drop what they popped)."""
        t = max(timeout, 0.001)
        command = ("BZPOPMIN", *keys, f"{t:.3f}")
        if self._router is not None:
            router = self._router
            return await self._again(lambda: router.call_blocking(keys[0], command, t, abandoned))
        if self._blocking is not None:
            blocking = self._blocking
            return await self._again(lambda: blocking.call(command, t, abandoned))
        return await self._again(lambda: self.client.bzpopmin(keys, timeout=t))

    async def withdraw(self, queue: str, worker: str) -> list[Claim]:
        k = self.keys(queue)
        self._offered.pop((queue, worker), None)
        late = await self._late(queue, worker)
        reply = await self._run("withdraw", [k.idle, k.inbox(worker)], [worker], again=True)
        records = reply if late is None else [late, *reply]
        return [_handed(record, 0) for record in records]

    async def renew(self, queue: str, claims: Sequence[Claim], lease_ms: int) -> list[bool]:
        if not claims:
            return []
        k = self.keys(queue)
        args: list[Any] = [lease_ms, self.backstop_ms]
        for c in claims:
            args += [c.id, c.token]
        keys = [k.running, *(k.task(c.id) for c in claims)]
        reply = await self._run("renew", keys, args, again=True)
        return [bool(x) for x in reply]

    async def settle(self, queue: str, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        k = self.keys(queue)
        keys = [k.running, k.due, k.dead, k.wake, *(k.task(o.id) for o in outcomes)]
        keys += [k.done(o.id) for o in outcomes]
        args: list[Any] = [self.result_ttl_ms, self.dead_ttl_ms, self.backstop_ms]
        for o in outcomes:
            data = o.result if o.kind is OutcomeKind.COMPLETE else o.error
            args += [
                o.id,
                o.token,
                KIND_CODE[o.kind],
                max(0, o.delay_ms),
                b"" if data is None else data,
                clip_traceback(o.traceback) or b"",
            ]
        return [bool(x) for x in await self._run("settle", keys, args)]

    async def release(self, queue: str, claims: Sequence[Claim]) -> list[bool]:
        if not claims:
            return []
        k = self.keys(queue)
        args: list[Any] = []
        for c in claims:
            args += [c.id, c.token]
        keys = [k.ready, k.running, k.wake, *(k.task(c.id) for c in claims)]
        return [bool(x) for x in await self._run("release", keys, args)]

    async def recover(self, queue: str) -> RecoverReport:
        k = self.keys(queue)
        keys = [k.ready, k.running, k.dead, k.wake, k.task_prefix, k.done_prefix, k.inbox_prefix]
        reply = await self._run("recover", keys, [self.dead_ttl_ms, self.backstop_ms], again=True)
        n = int(reply[0])
        ids = [text(x) for x in reply[1:]]
        return RecoverReport(requeued=ids[:n], dead=ids[n:])

    async def cancel(self, queue: str, task_ids: Sequence[str]) -> list[CancelOutcome]:
        if not task_ids:
            return []
        k = self.keys(queue)
        keys = [k.ready, k.due, k.running]
        for task_id in task_ids:
            keys += [k.task(task_id), k.done(task_id)]
        # Cancelling twice changes nothing the second time, so a lost reply may be retried.
        reply = await self._run("cancel", keys, [self.result_ttl_ms, *task_ids], again=True)
        return [_CANCEL_REPLY[int(x)] for x in reply]

    async def watch(self, queue: str, task_ids: Sequence[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        k = self.keys(queue)
        states = await self._run("watch", [k.task(i) for i in task_ids], [], again=True)
        pending = {k.done(i) for i, s in zip(task_ids, states, strict=True) if int(s) == 2}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            keys, wait_s = sorted(pending), max(left, 0.001)
            got = await self._again(
                lambda keys=keys, wait_s=wait_s: self.client.blpop(keys, timeout=wait_s)  # type: ignore[misc]
            )
            if got is None:
                return
            pending.discard(text(got[0]))

    async def get(self, queue: str, task_id: str) -> TaskRecord | None:
        key = self.keys(queue).task(task_id)
        h: dict[bytes, bytes] = await self._again(lambda: self.client.hgetall(key))  # type: ignore[arg-type,return-value]
        return _record(queue, task_id, h)

    async def get_many(self, queue: str, task_ids: Sequence[str]) -> list[TaskRecord | None]:
        k = self.keys(queue)
        rows = await self._pipelined("hgetall", [k.task(i) for i in task_ids])
        return [_record(queue, i, h) for i, h in zip(task_ids, rows, strict=True)]

    async def stats(self, queue: str) -> QueueStats:
        k = self.keys(queue)
        ready, due, running, dead = await self._pipelined(
            "zcard", [k.ready, k.due, k.running, k.dead]
        )
        return QueueStats(queued=ready, scheduled=due, running=running, dead=dead)

    async def dead_ids(self, queue: str, limit: int = 100) -> list[str]:
        key = self.keys(queue).dead
        ids: list[bytes] = await self._again(lambda: self.client.zrange(key, 0, limit - 1))  # type: ignore[arg-type,return-value]
        return [text(i) for i in ids]

    async def requeue(self, queue: str, ids: Sequence[str]) -> list[bool]:
        if not ids:
            return []
        k = self.keys(queue)
        keys = [k.ready, k.dead, k.wake, *(k.task(i) for i in ids)]
        return [bool(x) for x in await self._run("requeue", keys, [self.backstop_ms, *ids])]

    async def scan(self, pattern: str) -> list[bytes]:
        async def scan_all() -> list[bytes]:
            return [key async for key in self.client.scan_iter(match=pattern, count=1000)]

        return await self._again(scan_all)

    async def _pipelined(self, command: str, keys: Sequence[str | bytes], *args: Any) -> list[Any]:
        """One command over many keys in one round trip (no transaction needed: reads)."""

        async def go() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    getattr(pipe, command)(key, *args)
                return await pipe.execute()

        return await self._again(go)

    async def payload_ids(self, queue: str) -> set[str]:
        k = self.keys(queue)
        keys = await self.scan(f"{k.pattern[:-1]}t:*")
        if not keys:
            return set()
        rows = await self._pipelined("hmget", keys, FIELD.chunks, FIELD.state)
        held = [pn is not None and st != TaskState.DEAD.encode() for pn, st in rows]
        cut = len(k.task_prefix)
        return {text(key)[cut:] for key, has in zip(keys, held, strict=True) if has}

    async def purge(self, queue: str) -> int:
        keys = await self.scan(self.keys(queue).pattern)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            await self._again(lambda chunk=chunk: self.client.delete(*chunk))  # type: ignore[misc]
        return len(keys)

    async def purge_namespace(self) -> int:
        """Delete every key of this store's namespace (and nothing outside it)."""
        keys = await self.scan(f"{self.namespace}:*")
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            await self._again(lambda chunk=chunk: self.client.delete(*chunk))  # type: ignore[misc]
        return len(keys)

    def _check_open(self) -> None:
        if self.closed:  # a closed client would quietly reconnect; refuse instead
            raise Closed(f"Redis store at {self.target}")

    async def aclose(self) -> None:
        """Close every connection; every later call raises `Closed`. Idempotent."""
        self.closed = True
        if self._pipe is not None:
            await self._pipe.aclose()
        if self._blocking is not None:
            await self._blocking.aclose()
        if self._sync is not None:
            self._sync.close()
        if self._router is not None:
            await self._router.aclose()
        if self._owns_client:
            await self.client.aclose()


def _enqueue_report(
    queue: str, items: Sequence[NewTask], max_size: int | None, reply: list[Any]
) -> EnqueueReport:
    if reply[0] == -1:
        raise QueueFull(queue, int(reply[1]), len(items), max_size or 0)
    accepted: list[str] = []
    dups: list[str] = []
    same: list[str] = []
    for item, flag in zip(items, reply[1:], strict=True):
        (accepted if flag == 1 else dups).append(item.id)
        if flag == 2:
            same.append(item.id)
    return EnqueueReport(accepted, dups, same)


def _claims(reply: list[Any]) -> list[Claim]:
    return [
        Claim(
            text(reply[j]),
            int(reply[j + 1]),
            int(reply[j + 2]),
            int(reply[j + 3]),
            reply[j + 4],
            int(reply[j + 5]),
        )
        for j in range(4, len(reply), 6)
    ]


def _resolved(value: Any) -> asyncio.Future[Any]:
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done.set_result(value)
    return done


def _ignore(reply: asyncio.Future[Any]) -> None:
    """A wake token popped after its waiter gave up: a hint, nothing to keep."""


def _check_database(url: str) -> None:
    """redis-py reads `redis://host/abc` as database 0: refuse it instead, naming the path
    (never the whole URL, which may hold a password)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("redis", "rediss"):
        return
    db = parsed.path.strip("/")
    if db and not db.isdigit():
        raise InvalidArgument(
            f"the database in a Redis URL is a number (redis://host:6379/0), not {db!r}"
        )


def _handed(record: bytes, server_ms: int) -> Claim:
    """A claim from a worker's inbox (see enqueue.lua), its age counted from `server_ms`."""
    task_id, token, attempt, max_attempts, since, payload = record.split(b"\n", 5)
    return Claim(
        text(task_id),
        int(token),
        int(attempt),
        int(max_attempts),
        payload,
        server_ms - int(since),
    )


_B = {name: getattr(FIELD, name).encode() for name in FIELD.__dataclass_fields__}
_CANCEL_REPLY = [
    CancelOutcome.UNKNOWN,
    CancelOutcome.FINISHED,
    CancelOutcome.CANCELLED,
    CancelOutcome.CANCELLED_RUNNING,
]


def _record(queue: str, task_id: str, h: dict[bytes, bytes]) -> TaskRecord | None:
    state = h.get(_B["state"]) if h else None
    if state is None:
        return None
    error = h.get(_B["error"])
    trace = h.get(_B["traceback"])
    return TaskRecord(
        id=task_id,
        queue=queue,
        state=TaskState(text(state)),
        priority=int(h.get(_B["priority"], 0)),
        attempts=int(h.get(_B["attempts"], 0)),
        max_attempts=int(h.get(_B["max_attempts"], 1)),
        token=int(h.get(_B["token"], 0)),
        enqueued_ms=int(h.get(_B["enqueued"], 0)),
        result=h.get(_B["result"]),
        error=None if error is None else error.decode("utf-8", "replace"),
        has_payload=_B["chunks"] in h and state != TaskState.DEAD.encode(),
        traceback=None if trace is None else trace.decode("utf-8", "replace"),
        worker=text(h[_B["worker"]]) if _B["worker"] in h else None,
    )
