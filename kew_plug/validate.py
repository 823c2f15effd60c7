"""Checks on caller input, done once in the core so every store gets clean values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from kew_plug.errors import InvalidArgument
from kew_plug.ordering import PRIORITY_MAX

MAX_ID_LENGTH = 256
MAX_DELAY_S = 366 * 86400.0
MAX_ATTEMPTS = 1000


def name(kind: str, value: object) -> str:
    """Task ids and queue names: non-empty text up to 256 chars, no braces (they would break
    the per-queue hash tag) and no control characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{kind} must be a str, not {type(value).__name__}: {value!r}")
    if not value:
        raise InvalidArgument(f"{kind} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{kind} is {len(value)} chars long; the limit is {MAX_ID_LENGTH}")
    # isprintable() is a fast C check; only a suspect value pays for the exact scan.
    suspect = not value.isprintable() or "{" in value or "}" in value
    if suspect and any(c in "{}" or ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidArgument(f"{kind} {value!r} contains a brace or a control character")
    return value


def args(value: object) -> tuple[Any, ...]:
    """A task's positional arguments: a sequence (tuple, list, range…). Text is refused
    rather than split into characters: `("hello")` is a str, one argument is `("hello",)`."""
    if type(value) is tuple:
        return value
    text = isinstance(value, str | bytes | bytearray)
    if isinstance(value, Sequence) and not text:
        return tuple(value)
    kind = type(value).__name__
    if text:
        raise InvalidArgument(
            f"args must be a tuple or list of arguments, not a {kind} ({value!r:.40}); "
            f"a single argument needs a trailing comma: (x,)"
        )
    if isinstance(value, Mapping):
        raise InvalidArgument(f"args must be a tuple or list, not a {kind}; keywords go in kwargs")
    raise InvalidArgument(f"args must be a tuple or list of arguments, not {kind}: {value!r:.40}")


def kwargs(value: object) -> dict[str, Any]:
    """A task's keyword arguments: a mapping of str names."""
    if not isinstance(value, Mapping):
        kind = type(value).__name__
        raise InvalidArgument(f"kwargs must be a mapping of argument names to values, not {kind}")
    names = [k for k in value if not isinstance(k, str)]
    if names:
        raise InvalidArgument(f"kwargs names must be str, got {names[0]!r}")
    return dict(value)


def priority(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgument(f"priority must be an int, not {type(value).__name__}")
    if not -PRIORITY_MAX <= value <= PRIORITY_MAX:
        raise InvalidArgument(f"priority {value} is outside [-{PRIORITY_MAX}, {PRIORITY_MAX}]")
    return value


def seconds(kind: str, value: object, *, allow_zero: bool = True) -> float:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise InvalidArgument(f"{kind} must be a number of seconds, not {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v < 0 or (v == 0 and not allow_zero) or v > MAX_DELAY_S:
        bound = "> 0" if not allow_zero else ">= 0"
        raise InvalidArgument(f"{kind} must be {bound} and at most {MAX_DELAY_S:.0f} s, got {v}")
    return v


def delay_ms(delay: float | timedelta | None, at: datetime | None) -> int:
    """Milliseconds from now. `at` is converted with this host's clock once, at submit; from
    then on the store's clock decides when the task is due."""
    if delay is not None and at is not None:
        raise InvalidArgument("give either delay or at, not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidArgument(f"at must be a datetime, not {type(at).__name__}")
        now = datetime.now(at.tzinfo)
        return int(max(0.0, seconds("at - now", max(0.0, (at - now).total_seconds()))) * 1000)
    if delay is None:
        return 0
    return int(seconds("delay", delay) * 1000)


def retries(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < MAX_ATTEMPTS:
        raise InvalidArgument(f"retries must be an int in [0, {MAX_ATTEMPTS}), got {value!r}")
    return value
