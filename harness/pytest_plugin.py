"""pytest plugin (entry point `pytest11`), so a user's own suite can run kew-plug's proofs.

Fixtures:
- `kew_namespace`: a Redis key namespace unique to this test and xdist worker;
- `kew_memory_store`, `kew_fakeredis_store`, `kew_redis_store`: one store per backend
  (`kew_redis_store` uses $KEW_REDIS_URL, else a throwaway redis-server, else skips). With
  pytest-asyncio (strict or auto mode) they are async fixtures on the test's own loop;
  without it they live on `kew_loop`, an `asyncio.Runner` the test runs coroutines on;
- `kew_loop`: that runner, one per test;
- `kew_harness`: runs the multi-process harness, e.g. `kew_harness(store="pkg.mod:factory")`,
  and returns its report (`report.ok`, `report.data["checks"]`).

Options `--kew-store`, `--kew-serializer`, `--kew-breaker` (each `package.module:factory`)
point the shipped contract suites at a user's own parts:

    pytest --pyargs harness.contract --kew-store=myapp.queueing:make_store

Everything is imported lazily, so the plugin costs nothing in suites that do not use it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.runner import Report
    from kew_plug.interfaces import Breaker, Serializer, Store

CONTRACT_DIR = Path(__file__).resolve().parent / "contract"
SUITES = (
    "store.py",
    "store_payloads.py",
    "store_cancel.py",
    "store_handoff.py",
    "serializer.py",
    "breaker.py",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "kew-plug", "kew-plug contract suites (pytest --pyargs harness.contract)"
    )
    for kind in ("store", "serializer", "breaker"):
        group.addoption(
            f"--kew-{kind}",
            dest=f"kew_{kind}",
            metavar="MODULE:FACTORY",
            default=None,
            help=f"run the shipped {kind.capitalize()} contract suite on the {kind}s this "
            "factory makes",
        )


def pytest_configure(config: pytest.Config) -> None:
    # The store fixtures must be set up, used and torn down on one event loop. With
    # pytest-asyncio that is the test's loop (async fixtures it runs); without it, kew_loop.
    if config.pluginmanager.has_plugin("asyncio"):
        from harness import plugin_async_stores as stores
    else:
        from harness import plugin_loop_stores as stores  # type: ignore[no-redef]
    config.pluginmanager.register(stores, "kew_plug_stores")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect the shipped suites when their folder is collected (`--pyargs
    harness.contract`): their names do not match `test_*.py`. A suite named on the command
    line is collected by pytest itself."""
    if (
        file_path.name in SUITES
        and file_path.resolve().parent == CONTRACT_DIR
        and not parent.session.isinitpath(file_path)
    ):
        module: pytest.Module = pytest.Module.from_parent(parent, path=file_path)
        return module
    return None


def _factory(config: pytest.Config, kind: str) -> Callable[..., Any]:
    from kew_plug.errors import UnknownBackend
    from kew_plug.registry import load_object

    path = config.getoption(f"kew_{kind}")
    if not path:
        pytest.skip(f"the {kind} contract runs on --kew-{kind}=package.module:factory")
    try:
        factory = load_object(path, kind, [])
    except UnknownBackend as e:
        pytest.fail(f"--kew-{kind}: {e}", pytrace=False)
    if not callable(factory):
        pytest.fail(f"--kew-{kind}={path} is not callable", pytrace=False)
    made: Callable[..., Any] = factory
    return made


@pytest.fixture
def kew_store_factory(request: pytest.FixtureRequest) -> Callable[..., Store]:
    """The Store factory of `--kew-store` (the contract suite calls it on its own loop)."""
    return _factory(request.config, "store")


@pytest.fixture
def kew_breaker_factory(request: pytest.FixtureRequest) -> Callable[..., Breaker]:
    """The Breaker factory of `--kew-breaker`."""
    return _factory(request.config, "breaker")


@pytest.fixture(scope="session")
def kew_serializer(request: pytest.FixtureRequest) -> Serializer:
    """The serializer `--kew-serializer`'s factory makes (one for the session)."""
    from kew_plug.interfaces import Serializer

    made = _factory(request.config, "serializer")()
    if not isinstance(made, Serializer):
        pytest.fail(f"--kew-serializer made a {type(made).__name__}, not a Serializer")
    return made


@pytest.fixture
def kew_namespace() -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"kewtest-{worker}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def kew_loop() -> Iterator[asyncio.Runner]:
    """An event loop for this test, for suites without pytest-asyncio:
    `kew_loop.run(coroutine)`. Without pytest-asyncio the store fixtures live on it."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture(scope="session")
def kew_redis_url() -> Iterator[str]:
    url = os.environ.get("KEW_REDIS_URL")
    if url:
        yield url
        return
    from harness.servers import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("no KEW_REDIS_URL and no redis-server binary")
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def kew_harness(kew_namespace: str) -> Callable[..., Report]:
    """Call with RunConfig fields (procs, tasks, store, serializer, breaker, roles, ...)."""
    from harness.runner import run

    counter = iter(range(1_000_000))

    def run_harness(**options: Any) -> Report:
        options.setdefault("namespace", f"{kew_namespace}-{next(counter)}")
        options.setdefault("progress", False)
        return run(**options)

    return run_harness
