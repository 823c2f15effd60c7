"""The lease book's own clock: which claims it reports as lapsed (their lease ran out by the
worker's clock before a renewal or settlement was confirmed), and which it does not."""

from __future__ import annotations

import time

from kew_plug.backends.memory import MemoryStore
from kew_plug.leases import LeaseBook
from kew_plug.models import Claim
from kew_plug.stats import WorkerStats

LEASE_MS = 1000


def claim(token: int, task_id: str = "t") -> Claim:
    return Claim(task_id, token, 1, 3, b"payload")


def book() -> tuple[LeaseBook, list[tuple[int, float]]]:
    heard: list[tuple[int, float]] = []
    lb = LeaseBook(
        MemoryStore(),
        "q",
        LEASE_MS,
        WorkerStats(),
        on_lapse=lambda c, late: heard.append((c.token, late)),
    )
    return lb, heard


def test_a_claim_settled_within_its_lease_has_not_lapsed() -> None:
    lb, heard = book()
    lb.add(claim(1), time.monotonic())
    lb.drop("t", 1)
    assert heard == [] and lb.stats.lapsed == 0


def test_a_claim_settled_after_its_lease_ran_out_has_lapsed_once() -> None:
    lb, heard = book()
    lb.add(claim(1), time.monotonic() - 5.0)  # claimed 5 s ago: its 1 s lease is over
    lb.drop("t", 1)
    lb.drop("t", 1)  # a second drop of the same claim is a no-op
    assert [token for token, _ in heard] == [1] and lb.stats.lapsed == 1
    assert 3.9 < heard[0][1] < 5.0  # how late, by this clock


def test_a_claim_replaced_by_a_new_claim_of_the_same_task_is_judged_by_its_own_lease() -> None:
    lb, heard = book()
    lb.add(claim(1), time.monotonic() - 5.0)
    # The store handed the task to us again while claim 1's outcome was still unsettled
    # (it was stuck behind a stall): claim 1 is over, and its lease had run out.
    lb.add(claim(2), time.monotonic())
    assert [token for token, _ in heard] == [1]
    # Claim 1's late settlement, refused as stale, does not touch claim 2.
    assert lb.drop("t", 1) is None
    # A third claim while claim 2's lease still runs: the store's doing, not a lapse.
    lb.add(claim(3), time.monotonic())
    assert [token for token, _ in heard] == [1]
