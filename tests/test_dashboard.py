"""The dashboard's page and its guards (CSRF, read-only, token), through Starlette's test
client; tests/test_browser.py opens the same page in a real browser."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from kew_plug import Queue, Worker
from kew_plug.backends.redis import RedisStore
from kew_plug.cli.dashboard import create_app
from kew_plug.models import TaskState

SECRET = "dashboard-test-secret-0123456789"


def explode(n: int) -> int:
    raise RuntimeError(f"exploded {n}")


def square(n: int) -> int:
    return n * n


async def workload(url: str, namespace: str) -> None:
    """Known state: 2 done, 1 dead (with its traceback), 3 queued, 1 scheduled."""
    queue = Queue(RedisStore.from_url(url, namespace=namespace), name="jobs", secret=SECRET)
    await queue.submit(square, (2,), task_id="ok-1")
    await queue.submit(square, (3,), task_id="ok-2")
    await queue.submit(explode, (7,), task_id="boom", retries=0)
    await Worker(queue).drain()
    for i in range(3):
        await queue.submit(square, (i,), task_id=f"wait-{i}")
    await queue.submit(square, (9,), task_id="later", delay=3600)
    await queue.aclose()


async def state_of(url: str, namespace: str, task_id: str) -> TaskState | None:
    async with RedisStore.from_url(url, namespace=namespace) as store:
        record = await store.get("jobs", task_id)
        return None if record is None else record.state


def client_for(url: str, namespace: str, **options: object) -> TestClient:
    app = create_app(
        lambda: RedisStore.from_url(url, namespace=namespace),
        target=url,
        namespace=namespace,
        **options,  # type: ignore[arg-type]
    )
    return TestClient(app)


@pytest.fixture
def loaded(redis_url: str, namespace: str) -> Iterator[tuple[str, str]]:
    asyncio.run(workload(redis_url, namespace))
    yield redis_url, namespace


def cell(html: str, queue: str, field: str) -> str:
    row = re.search(rf'<tr data-queue="{queue}">(.*?)</tr>', html, re.S)
    assert row is not None
    value = re.search(rf'data-field="{field}">([^<]*)<', row.group(1))
    assert value is not None
    return value.group(1)


def test_page_shows_counts_dead_letters_and_tracebacks(loaded: tuple[str, str]) -> None:
    with client_for(*loaded) as client:
        page = client.get("/")
    assert page.status_code == 200
    html = page.text
    counts = {f: cell(html, "jobs", f) for f in ("queued", "scheduled", "running", "dead")}
    assert counts == {"queued": "3", "scheduled": "1", "running": "0", "dead": "1"}
    # The end of the traceback: the task's own frame and its error, not kew-plug's frames.
    shown = re.search(r"<pre>(.*?)</pre>", html, re.S)
    assert shown is not None
    assert "in explode" in shown.group(1) and "RuntimeError: exploded 7" in shown.group(1)
    assert "runner.py" not in shown.group(1)
    assert 'http-equiv="refresh"' in html


def test_requeue_needs_the_csrf_token(loaded: tuple[str, str]) -> None:
    url, namespace = loaded
    with client_for(url, namespace) as client:
        page = client.get("/")
        token = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert token is not None
        forged = client.post("/requeue", data={"queue": "jobs", "id": "boom", "csrf": "guess"})
        assert forged.status_code == 403
        assert asyncio.run(state_of(url, namespace, "boom")) is TaskState.DEAD
        done = client.post(
            "/requeue",
            data={"queue": "jobs", "id": "boom", "csrf": token.group(1)},
            follow_redirects=False,
        )
    assert done.status_code == 303
    assert asyncio.run(state_of(url, namespace, "boom")) is TaskState.QUEUED


def test_read_only_has_no_requeue(loaded: tuple[str, str]) -> None:
    url, namespace = loaded
    with client_for(url, namespace, read_only=True) as client:
        page = client.get("/")
        assert "requeue" not in page.text.split('id="dead"', 1)[1].split("</table>", 1)[0]
        refused = client.post("/requeue", data={"queue": "jobs", "id": "boom", "csrf": "x"})
    assert refused.status_code == 403
    assert asyncio.run(state_of(url, namespace, "boom")) is TaskState.DEAD


def test_a_token_guards_every_request(loaded: tuple[str, str]) -> None:
    with client_for(*loaded, token="t0ps3cret") as client:
        assert client.get("/").status_code == 401
        assert client.get("/api/state").status_code == 401
        first = client.get("/?token=t0ps3cret")
        assert first.status_code == 200
        assert client.get("/api/state").json()["queues"][0]["queued"] == 3  # by cookie now


def test_binding_beyond_loopback_needs_a_token(redis_url: str) -> None:
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "kew_plug", "dashboard", redis_url, "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "needs --token" in out.stderr
