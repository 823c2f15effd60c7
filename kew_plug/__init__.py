"""kew-plug: a task queue composed from a Store, a Serializer and a Breaker.

The built-in parts (`RedisStore`, `MemoryStore`, `FakeRedisStore`, `LocalBreaker`,
`RedisBreaker`, `Signed` and the serializers) import from here too, but lazily: importing
`kew_plug` loads no backend, serializer or their dependencies until one is named."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kew_plug.context import TaskContext, current_task
from kew_plug.errors import (
    Closed,
    InvalidArgument,
    KewError,
    PayloadError,
    PayloadTooLarge,
    QueueFull,
    SerializationError,
    StoreError,
    StoreUnavailable,
    TaskCancelled,
    TaskExists,
    TaskFailed,
    TaskNotFound,
    TaskTimeout,
    UnknownBackend,
    Unsupported,
)
from kew_plug.extras import missing_extra
from kew_plug.hooks import TaskEvent
from kew_plug.interfaces import (
    Breaker,
    BreakerDecision,
    BreakerState,
    DecisionKind,
    Serializer,
    Store,
)
from kew_plug.models import (
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
)
from kew_plug.queue import Queue, TaskHandle, TaskSpec
from kew_plug.retry import RetryPolicy
from kew_plug.sync_queue import SyncHandle, SyncQueue
from kew_plug.worker import Worker, WorkerStats

if TYPE_CHECKING:
    from kew_plug.backends.breakers import LocalBreaker
    from kew_plug.backends.fake import FakeRedisStore
    from kew_plug.backends.memory import MemoryStore
    from kew_plug.backends.redis.breaker import RedisBreaker
    from kew_plug.backends.redis.store import RedisStore
    from kew_plug.serializers.pickling import (
        CloudpickleSerializer,
        DillSerializer,
        PickleSerializer,
    )
    from kew_plug.serializers.signed import Signed

# Name -> module of each built-in part, imported on first access (PEP 562).
_PARTS = {
    "MemoryStore": "kew_plug.backends.memory",
    "FakeRedisStore": "kew_plug.backends.fake",
    "RedisStore": "kew_plug.backends.redis.store",
    "LocalBreaker": "kew_plug.backends.breakers",
    "RedisBreaker": "kew_plug.backends.redis.breaker",
    "CloudpickleSerializer": "kew_plug.serializers.pickling",
    "DillSerializer": "kew_plug.serializers.pickling",
    "PickleSerializer": "kew_plug.serializers.pickling",
    "Signed": "kew_plug.serializers.signed",
}


def __getattr__(name: str) -> Any:
    module = _PARTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kew_plug' has no attribute {name!r}")
    try:
        imported = importlib.import_module(module)
    except ImportError as e:
        hint = missing_extra(e)
        if hint is None:
            raise
        raise ImportError(f"kew_plug.{name}: {hint}", name=e.name) from e
    value = getattr(imported, name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PARTS])


__all__ = [
    "Breaker",
    "BreakerDecision",
    "BreakerState",
    "Claim",
    "ClaimBatch",
    "Closed",
    "CloudpickleSerializer",
    "DecisionKind",
    "DillSerializer",
    "EnqueueReport",
    "FakeRedisStore",
    "InvalidArgument",
    "KewError",
    "LocalBreaker",
    "MemoryStore",
    "NewTask",
    "Outcome",
    "OutcomeKind",
    "PayloadError",
    "PayloadTooLarge",
    "PickleSerializer",
    "Queue",
    "QueueFull",
    "QueueStats",
    "RecoverReport",
    "RedisBreaker",
    "RedisStore",
    "RetryPolicy",
    "SerializationError",
    "Serializer",
    "Signed",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SyncHandle",
    "SyncQueue",
    "TaskCancelled",
    "TaskContext",
    "TaskEvent",
    "TaskExists",
    "TaskFailed",
    "TaskHandle",
    "TaskNotFound",
    "TaskRecord",
    "TaskSpec",
    "TaskState",
    "TaskTimeout",
    "UnknownBackend",
    "Unsupported",
    "Worker",
    "WorkerStats",
    "current_task",
]
