"""`package.module:attribute` on the command line to a Queue: the object itself, or a
factory (sync or async) that returns one."""

from __future__ import annotations

import importlib
import inspect
import sys
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
        obj = obj()
        if inspect.isawaitable(obj):
            obj = await obj
    if not isinstance(obj, Queue):
        raise UsageError(f"{path!r} is of type {type(obj).__name__}, not a kew_plug Queue")
    return obj
