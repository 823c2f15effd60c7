"""Typed errors. Every message names the thing that was wrong and, where it helps, the fix."""

from __future__ import annotations

from collections.abc import Iterable


class KewError(Exception):
    """Base of every error kew-plug raises on purpose."""


class InvalidArgument(KewError, ValueError):
    """An argument is out of range or of the wrong kind; the message names it."""


class TaskExists(KewError):
    """A task id was submitted that the queue already holds; the stored task is untouched."""

    def __init__(self, queue: str, task_id: str) -> None:
        super().__init__(f"task id {task_id!r} already exists in queue {queue!r}; nothing stored")
        self.queue = queue
        self.task_id = task_id


class QueueFull(KewError):
    """Accepting the batch would take the queue past its max_size; nothing was stored."""

    def __init__(self, queue: str, size: int, incoming: int, max_size: int) -> None:
        super().__init__(
            f"queue {queue!r} holds {size} waiting tasks; adding {incoming} would exceed "
            f"max_size={max_size}; the whole batch was refused"
        )
        self.queue = queue
        self.size = size
        self.incoming = incoming
        self.max_size = max_size


class SerializationError(KewError):
    """An object could not be turned into bytes (refused at submit, before anything is stored)."""

    def __init__(self, what: str, serializer: str, cause: BaseException | str) -> None:
        reason = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        super().__init__(f"cannot serialize {what} with {serializer!r}: {reason}")
        self.what = what
        self.serializer = serializer


class PayloadError(KewError):
    """Stored bytes could not be read back: corrupt, unsigned, tampered, or another format."""


class PayloadTooLarge(PayloadError):
    """A payload or result is over the configured size limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class UnknownBackend(KewError, LookupError):
    """A store, serializer or breaker name that the registry does not know."""

    def __init__(self, kind: str, name: str, known: Iterable[str], hint: str = "") -> None:
        listed = ", ".join(sorted(known))
        extra = f" ({hint})" if hint else ""
        super().__init__(f"unknown {kind} {name!r}{extra}; known: {listed}")
        self.kind = kind
        self.name = name


class StoreError(KewError):
    """A store call failed; the message is one line naming the server and the cause. Its
    subclass `StoreUnavailable` means the server cannot serve now (retrying may help); a
    plain `StoreError` means it refused this call (a script error, a key of the wrong type)."""


class StoreUnavailable(StoreError, ConnectionError):
    """The store's server cannot be reached, refused us, or cannot take writes now (out of
    memory, read-only, loading); the message names host and cause."""


class Closed(KewError, RuntimeError):
    """A call on a Queue or Store after its `aclose()`: it does not quietly reconnect."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} is closed; make a new one to go on")


class TaskFailed(KewError):
    """Raised by `Queue.result` for a task that ended dead; carries the last error text."""

    def __init__(self, task_id: str, error: str | None) -> None:
        super().__init__(f"task {task_id!r} failed: {error or 'no error recorded'}")
        self.task_id = task_id
        self.error = error


class Unsupported(KewError, NotImplementedError):
    """The store lacks an optional capability (for example cancellation)."""


class TaskCancelled(KewError):
    """Raised by `Queue.result` for a task that was cancelled."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} was cancelled")
        self.task_id = task_id


class TaskNotFound(KewError, LookupError):
    """No task with this id in the queue: never submitted, or its record expired."""

    def __init__(self, task_id: str, queue: str) -> None:
        super().__init__(f"no task {task_id!r} in queue {queue!r} (never submitted, or expired)")
        self.task_id = task_id


class TaskTimeout(KewError, TimeoutError):
    """A task ran past its timeout and was cancelled (counted as a failed attempt)."""
