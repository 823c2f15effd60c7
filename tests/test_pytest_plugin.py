"""The pytest plugin's fixtures, as a user's suite would use them."""

from __future__ import annotations

import os

import pytest

from kew_plug import Queue, Worker
from kew_plug.interfaces import Store


async def roundtrip(store: Store) -> int:
    queue = Queue(store, "cloudpickle", name="plugin", secret="p" * 32)
    handle = await queue.submit(divmod, (17, 5))
    await Worker(queue).drain()
    result: int = (await handle.result())[0]
    return result


async def test_memory_store_fixture(kew_memory_store: Store) -> None:
    assert await roundtrip(kew_memory_store) == 3


async def test_fakeredis_store_fixture(kew_fakeredis_store: Store) -> None:
    assert await roundtrip(kew_fakeredis_store) == 3


async def test_redis_store_fixture_uses_its_own_namespace(
    kew_redis_store: Store, kew_namespace: str
) -> None:
    assert await roundtrip(kew_redis_store) == 3
    assert kew_redis_store.namespace.startswith("kewtest-")  # type: ignore[attr-defined]


def test_namespace_names_the_xdist_worker(kew_namespace: str) -> None:
    assert kew_namespace.startswith(f"kewtest-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")


# -- the plugin in a user's suite, run by pytester in a fresh pytest process --------------

pytest_plugins = ["pytester"]

ROUNDTRIP = """
import pytest

from kew_plug import Queue, Worker


async def roundtrip(store):
    queue = Queue(store, "cloudpickle", name="plugin", secret="p" * 32)
    handle = await queue.submit(divmod, (17, 5))
    await Worker(queue).drain()
    return (await handle.result())[0]


def check_harness(kew_harness):
    report = kew_harness(procs=2, tasks=20, roles="split")
    assert report.ok, report.data["failures"]
"""

ASYNC_SUITE = (
    ROUNDTRIP
    + """
import pytest

MARK


async def test_memory(kew_memory_store):
    assert await roundtrip(kew_memory_store) == 3


MARK


async def test_fakeredis(kew_fakeredis_store):
    assert await roundtrip(kew_fakeredis_store) == 3


def test_harness(kew_harness):
    check_harness(kew_harness)
"""
)

SYNC_SUITE = (
    ROUNDTRIP
    + """
def test_memory(kew_loop, kew_memory_store):
    assert kew_loop.run(roundtrip(kew_memory_store)) == 3


def test_fakeredis(kew_loop, kew_fakeredis_store):
    assert kew_loop.run(roundtrip(kew_fakeredis_store)) == 3


def test_harness(kew_harness):
    check_harness(kew_harness)
"""
)


# pytest-asyncio warns without it, and these suites turn warnings into errors.
LOOP_SCOPE = "asyncio_default_fixture_loop_scope = function"


def run_user_suite(pytester: pytest.Pytester, ini: str, suite: str, *args: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_user=suite)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", *args)
    result.assert_outcomes(passed=3)


def test_plugin_in_pytest_asyncio_strict_mode(pytester: pytest.Pytester) -> None:
    suite = ASYNC_SUITE.replace("MARK", "@pytest.mark.asyncio")
    run_user_suite(pytester, f"asyncio_mode = strict\n{LOOP_SCOPE}", suite)


def test_plugin_in_pytest_asyncio_auto_mode(pytester: pytest.Pytester) -> None:
    run_user_suite(pytester, f"asyncio_mode = auto\n{LOOP_SCOPE}", ASYNC_SUITE.replace("MARK", ""))


def test_plugin_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    run_user_suite(pytester, "", SYNC_SUITE, "-p", "no:asyncio")


USER_STORES = '''
from kew_plug.backends.memory import MemoryStore

STORES = {}


def make_store(namespace, **options):
    """One store per namespace: every store a test asks for shares its tasks."""
    if namespace not in STORES:
        STORES[namespace] = MemoryStore(**options)
    return STORES[namespace]


class ForgetsPayloads(MemoryStore):
    async def payload_ids(self, queue):
        return set()  # claims every payload is gone: the cleanup check would be blind


def make_broken_store(namespace, **options):
    if namespace not in STORES:
        STORES[namespace] = ForgetsPayloads(**options)
    return STORES[namespace]
'''


def store_suite_size() -> int:
    """Cases in the three Store suites (store, store_payloads, store_cancel)."""
    from harness.contract import store, store_cancel, store_payloads

    count = 0
    for suite in (store, store_payloads, store_cancel):
        for name in suite.__all__:
            marks = getattr(getattr(suite, name), "pytestmark", [])
            sizes = [len(m.args[1]) for m in marks if m.name == "parametrize"]
            count += sizes[0] if sizes else 1
    return count


def test_a_users_store_passes_the_shipped_store_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mystore=USER_STORES)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "harness.contract",
        "--kew-store=mystore:make_store",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == store_suite_size() >= 30
    assert "failed" not in outcomes and "error" not in outcomes
    # The other suites wait for their own options.
    assert outcomes["skipped"] > 0
    result.stdout.no_fnmatch_line("*harness/contract/store.py*SKIP*")


def test_a_broken_user_store_fails_the_shipped_store_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(mystore=USER_STORES)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "harness.contract.store",
        "--kew-store=mystore:make_broken_store",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] >= 1 and outcomes["passed"] >= 1
    result.stdout.fnmatch_lines(["*FAILED*test_enqueue_stores_record_and_payload*"])


def test_contract_options_name_a_bad_factory_in_one_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pyargs", "harness.contract.store",
        "--kew-store=nosuchmodule:make", "-x",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["*--kew-store: *cannot import 'nosuchmodule'*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
