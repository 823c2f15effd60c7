"""A breaker named `package.module:factory` receives what its signature asks for: the store
(to keep shared state in it), the queue's name and the breaker options."""

from __future__ import annotations

from typing import Any

import pytest

from kew_plug import Queue
from kew_plug.backends.breakers import LocalBreaker
from kew_plug.errors import UnknownBackend
from kew_plug.interfaces import Breaker, Store
from tests.broken_breakers import GrantsWhileOpen

SEEN: list[dict[str, Any]] = []


def takes_everything(store: Store, queue: str, failure_threshold: int = 5) -> Breaker:
    SEEN.append({"store": store, "queue": queue, "failure_threshold": failure_threshold})
    return LocalBreaker(failure_threshold=failure_threshold)


def takes_options(**options: Any) -> Breaker:
    SEEN.append(options)
    return LocalBreaker(**options)


def takes_nothing() -> Breaker:
    return LocalBreaker()


def not_a_breaker() -> object:
    return object()


HERE = "tests.test_breaker_registry"


async def test_factory_gets_store_queue_and_options(store: Store) -> None:
    SEEN.clear()
    queue = Queue(
        store, breaker=f"{HERE}:takes_everything", breaker_options={"failure_threshold": 2}
    )
    assert isinstance(queue.breaker, LocalBreaker) and queue.breaker.failure_threshold == 2
    assert [{"store": store, "queue": queue.name, "failure_threshold": 2}] == SEEN


async def test_kwargs_take_the_options_only_and_no_parameters_take_nothing(
    store: Store,
) -> None:
    SEEN.clear()
    Queue(store, breaker=f"{HERE}:takes_options", breaker_options={"reset_timeout": 3.0})
    assert SEEN == [{"reset_timeout": 3.0}]
    assert isinstance(Queue(store, breaker=f"{HERE}:takes_nothing").breaker, LocalBreaker)


async def test_a_factory_that_makes_no_breaker_is_refused(store: Store) -> None:
    with pytest.raises(UnknownBackend, match="it produced object"):
        Queue(store, breaker=f"{HERE}:not_a_breaker")


async def test_the_broken_breaker_wraps_the_stores_shared_breaker(
    make_store: Any,
) -> None:
    store = make_store()
    if store.shared_breaker("q") is None:
        with pytest.raises(SystemExit, match="needs a Redis store"):
            Queue(store, breaker="tests.broken_breakers:factory")
        return
    breaker = Queue(store, breaker="tests.broken_breakers:factory").breaker
    assert isinstance(breaker, GrantsWhileOpen) and breaker.shared
