"""`package.module:attribute` on the command line to a Queue: the object itself, or a
factory (sync or async, no arguments) that returns one."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from kew_plug.queue import Queue


class UsageError(Exception):
    """Bad command-line input: printed in one line, exit status 2."""


async def load_queue(path: str) -> Queue:
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{path!r} is not package.module:queue")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does: the app's own modules by their names
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(f"cannot import {module_name!r} (from {path!r}): {e}") from None
    try:
        obj: Any = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if callable(obj) and not isinstance(obj, Queue):
        _refuse_non_factory(path, module, obj)
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
        if not isinstance(obj, Queue):
            what = type(obj).__name__
            raise UsageError(f"{path!r} returned an object of type {what}, not a kew_plug Queue")
    if not isinstance(obj, Queue):
        raise UsageError(f"{path!r} is of type {type(obj).__name__}, not a kew_plug Queue")
    return obj


def _refuse_non_factory(path: str, module: ModuleType, fn: Callable[..., Any]) -> None:
    """Refuse, before calling it, a function that cannot be a factory, so that `--check`
    neither runs a task nor ends in a TypeError traceback."""
    wanted = "give a Queue, or a function taking no arguments that returns one"
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no signature to read (some builtins): the call will tell
    try:
        signature.bind()
    except TypeError:
        raise UsageError(f"{path!r} is a function that needs arguments: {wanted}") from None
    for queue in vars(module).values():
        if isinstance(queue, Queue) and any(p.fn is fn for p in queue.schedules):
            raise UsageError(f"{path!r} is a periodic task of queue {queue.name!r}: {wanted}")
