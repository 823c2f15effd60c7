"""A user's app for the `kew-plug` command tests: its queue comes from the environment
(KEW_PLUG_URL, KEW_PLUG_NAMESPACE), and each task body appends a line to a ledger file
(KEW_TEST_LEDGER), so a test can count runs independently of the store."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

from kew_plug import current_task
from kew_plug.settings import queue_from_env

queue = queue_from_env("jobs")
NOT_A_QUEUE = 42


def record(i: int) -> int:
    ctx = current_task()
    line = json.dumps({"id": ctx.task_id if ctx else "?", "pid": os.getpid()}) + "\n"
    fd = os.open(os.environ["KEW_TEST_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    time.sleep(0.003)  # long enough that a kill lands mid-task
    return i * i


def fail(i: int) -> int:
    raise ValueError(f"task {i} fails on purpose")


def crashing_queue() -> object:
    """Loads in the supervisor's check, then kills every worker process at start."""
    if multiprocessing.parent_process() is not None:
        os._exit(3)
    return queue


def hang(i: int) -> int:
    record(i)
    time.sleep(120)  # far past any shutdown timeout in the tests
    return i
