"""Generated task ids: unique within a process, across threads and across a fork."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from kew_plug.ids import new_task_id


def test_ids_are_24_hex_characters_and_unique_across_threads() -> None:
    with ThreadPoolExecutor(4) as pool:
        batches = list(pool.map(lambda _: [new_task_id() for _ in range(5000)], range(4)))
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids) == 20000
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports its next id and leaves at once, whatever happens
        try:
            os.write(write, new_task_id().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    mine = new_task_id()
    assert len(child) == 24 and child[:16] != mine[:16]
