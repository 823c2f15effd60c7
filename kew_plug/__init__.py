"""kew-plug: a task queue composed from a Store, a Serializer and a Breaker."""

from kew_plug.context import TaskContext, current_task
from kew_plug.errors import (
    InvalidArgument,
    KewError,
    PayloadError,
    PayloadTooLarge,
    QueueFull,
    SerializationError,
    StoreUnavailable,
    TaskExists,
    TaskFailed,
    TaskTimeout,
    UnknownBackend,
)
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
from kew_plug.worker import Worker, WorkerStats

__all__ = [
    "Breaker",
    "BreakerDecision",
    "BreakerState",
    "Claim",
    "ClaimBatch",
    "DecisionKind",
    "EnqueueReport",
    "InvalidArgument",
    "KewError",
    "NewTask",
    "Outcome",
    "OutcomeKind",
    "PayloadError",
    "PayloadTooLarge",
    "Queue",
    "QueueFull",
    "QueueStats",
    "RecoverReport",
    "RetryPolicy",
    "SerializationError",
    "Serializer",
    "Store",
    "StoreUnavailable",
    "TaskContext",
    "TaskEvent",
    "TaskExists",
    "TaskFailed",
    "TaskHandle",
    "TaskRecord",
    "TaskSpec",
    "TaskState",
    "TaskTimeout",
    "UnknownBackend",
    "Worker",
    "WorkerStats",
    "current_task",
]
