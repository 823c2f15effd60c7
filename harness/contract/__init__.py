"""The contract suites every Store, Serializer and Breaker must pass, shipped so that a user
can run them against their own implementation:

    pytest --pyargs harness.contract --kew-store=myapp.queueing:make_store
    pytest --pyargs harness.contract --kew-serializer=myapp.codec:make_serializer
    pytest --pyargs harness.contract --kew-breaker=myapp.guard:make_breaker

(`harness.contract.store` instead of `harness.contract` runs one suite.) A suite whose
option is not given skips. The factories:

- store: called with `namespace=` (a fresh one per test, when the factory takes it) and,
  for one test, `result_ttl=` seconds; every call made in one test must return stores that
  share their tasks, as separate processes sharing a server would.
- serializer: called with no arguments.
- breaker: called with `failure_threshold`, `reset_timeout`, `half_open_max_calls` and,
  when it takes one, `name=` (fresh per test).

The async tests run on an event loop of their own, one per test, with the stores and
breakers made inside it and closed before it ends: they need no pytest-asyncio, and work
beside it in any mode. This project runs the same suites on its own parts (tests/contract).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import pytest

from kew_plug.interfaces import Breaker, Store

T = TypeVar("T")
AsyncTest = Callable[..., Coroutine[Any, Any, None]]


def accepted(factory: Callable[..., Any], offered: dict[str, Any]) -> dict[str, Any]:
    """The subset of `offered` that `factory`'s signature takes by name (or all of it)."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return offered
    return {k: v for k, v in offered.items() if k in params}


class StoreMaker:
    """What a store test receives as `make_store`: the user's factory, bound to this test's
    namespace, remembering what it made so the test can close it on its own loop."""

    def __init__(self, factory: Callable[..., Store]) -> None:
        self.factory = factory
        self.namespace = f"kewc-{uuid.uuid4().hex[:10]}"
        self.made: list[Store] = []

    def __call__(self, **options: Any) -> Store:
        offered = {"namespace": self.namespace, **options}
        kwargs = accepted(self.factory, offered)
        missing = sorted(set(options) - set(kwargs))
        if missing:
            pytest.skip(f"the store factory does not take {', '.join(missing)}")
        store = self.factory(**kwargs)
        if not isinstance(store, Store):
            pytest.fail(f"the store factory returned {type(store).__name__}, not a Store")
        self.made.append(store)
        return store

    async def aclose(self) -> None:
        closed: set[int] = set()
        for store in self.made:
            if id(store) not in closed:  # a factory may hand out one shared object
                closed.add(id(store))
                await store.aclose()


class BreakerMaker:
    """What a breaker test receives as `make_breaker` (awaitable, like a store call)."""

    def __init__(self, factory: Callable[..., Breaker]) -> None:
        self.factory = factory
        self.name = f"kewc-{uuid.uuid4().hex[:10]}"
        self.made: list[Breaker] = []

    async def __call__(self, **options: Any) -> Breaker:
        breaker = self.factory(**accepted(self.factory, {"name": self.name, **options}))
        if not isinstance(breaker, Breaker):
            pytest.fail(f"the breaker factory returned {type(breaker).__name__}, not a Breaker")
        self.made.append(breaker)
        return breaker

    async def aclose(self) -> None:
        for breaker in self.made:
            await breaker.aclose()


def _on_own_loop(fn: AsyncTest, fixture: str, inject: Callable[..., Any]) -> Callable[..., None]:
    """A sync test wrapping the async `fn`: pytest sees the fixture `fixture` (the factory)
    plus `fn`'s other parameters; `inject(factory, names)` makes the resources `fn` asks
    for (on the new loop) and returns (kwargs, closer)."""
    signature = inspect.signature(fn)
    own = [p for p in signature.parameters.values() if p.name not in _INJECTED]
    wanted = [name for name in signature.parameters if name in _INJECTED]

    def test(**kwargs: Any) -> None:
        factory = kwargs.pop(fixture)

        async def body() -> None:
            made, closer = inject(factory, wanted)
            try:
                await fn(**kwargs, **made)
            finally:
                await closer()

        with asyncio.Runner() as runner:
            runner.run(body())

    functools.update_wrapper(test, fn)  # name, doc, module and marks
    del test.__wrapped__  # type: ignore[attr-defined]  # pytest must see the new signature
    factory_param = inspect.Parameter(fixture, inspect.Parameter.KEYWORD_ONLY)
    test.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[factory_param, *(p.replace(kind=p.KEYWORD_ONLY) for p in own)],
        return_annotation=None,
    )
    return test


_INJECTED = ("store", "make_store", "queue_name", "make_breaker")


def _store_resources(factory: Callable[..., Store], wanted: list[str]) -> Any:
    maker = StoreMaker(factory)
    made: dict[str, Any] = {}
    for name in wanted:
        if name == "make_store":
            made[name] = maker
        elif name == "queue_name":
            made[name] = f"q-{uuid.uuid4().hex[:8]}"
    if "store" in wanted:
        made["store"] = maker()
    return made, maker.aclose


def _breaker_resources(factory: Callable[..., Breaker], wanted: list[str]) -> Any:
    maker = BreakerMaker(factory)
    return {name: maker for name in wanted if name == "make_breaker"}, maker.aclose


def store_test(fn: AsyncTest) -> Callable[..., None]:
    """An async Store contract test taking any of `store`, `make_store`, `queue_name`."""
    return _on_own_loop(fn, "kew_store_factory", _store_resources)


def breaker_test(fn: AsyncTest) -> Callable[..., None]:
    """An async Breaker contract test taking `make_breaker`."""
    return _on_own_loop(fn, "kew_breaker_factory", _breaker_resources)


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], within: float = 5.0
) -> T:
    """Poll `probe` until `accept(value)`; fail with the last value after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s; last value: {value!r}")
        await asyncio.sleep(0.005)


def public_tests(namespace: dict[str, Any], *fixtures: str) -> list[str]:
    """`__all__` of a suite: its tests and the named fixtures, so `from suite import *`
    brings exactly what pytest should collect into a module that runs the suite."""
    return sorted([name for name in namespace if name.startswith("test_")] + list(fixtures))
