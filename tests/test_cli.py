"""`kew-plug` as users run it: real processes, a real redis-server, the app's own module."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.servers import RedisServer, free_port
from kew_plug import Queue
from kew_plug.models import TaskState
from kew_plug.settings import queue_from_url

pytestmark = pytest.mark.multiprocess
ROOT = Path(__file__).resolve().parent.parent
SECRET = "cli-test-secret-0123456789abcdef"


def env_for(url: str, namespace: str, ledger: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KEW_PLUG_URL": url,
        "KEW_PLUG_NAMESPACE": namespace,
        "KEW_PLUG_SECRET": SECRET,
        "KEW_TEST_LEDGER": str(ledger),
        "PYTHONPATH": str(ROOT),
    }


def kew(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kew_plug", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "runs.jsonl"


class Command:
    """`kew-plug worker` as a real process. Its output goes to a file, not a pipe: a pipe
    nobody reads fills up, and one held open by a leftover helper never reaches EOF."""

    def __init__(self, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kew_plug", "worker", *args],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a failed test stops it whole
            )

    @property
    def output(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM the command and wait for it (the command itself, not its helpers)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stop_group(self) -> None:
        """SIGKILL whatever is left of the command's process group (led by its pid)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


def start_worker(env: dict[str, str], ledger: Path, *args: str) -> Command:
    return Command(env, ledger.with_name("worker.log"), *args)


def wait_for(probe: Any, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)


def live_pids(env: dict[str, str]) -> set[int]:
    out = kew(env, "workers", "--json")
    assert out.returncode == 0, out.stderr
    return {w["pid"] for w in json.loads(out.stdout)["workers"]}


def runs(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines() if line]


def submit(env: dict[str, str], code: str) -> None:
    script = f"import asyncio\nfrom tests import cli_app\n{code}"
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


SUBMIT_1000 = """
async def main():
    q = cli_app.queue
    specs = [cli_app.TaskSpec(cli_app.record, (i,), task_id=f"t{i}") for i in range(1000)]
    for start in range(0, 1000, 100):
        await q.submit_many(specs[start:start + 100])
    await q.aclose()
asyncio.run(main())
""".replace("cli_app.TaskSpec", "__import__('kew_plug').TaskSpec")


def test_worker_command_survives_a_killed_child_and_stops_on_sigterm(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    env = env_for(redis_url, namespace, ledger)
    cmd = start_worker(env, ledger, "tests.cli_app:queue", "--processes", "2", "--lease", "2")
    try:
        first = wait_for(lambda: (p := live_pids(env)) and len(p) == 2 and p, 30, "2 workers")
        submit(env, SUBMIT_1000)
        wait_for(lambda: len(runs(ledger)) >= 200, 60, "200 tasks run")
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        restarted = wait_for(
            lambda: (p := live_pids(env)) - first and p, 30, "a replacement worker heartbeat"
        )
        assert victim not in restarted or len(restarted) > 2

        async def unfinished() -> int:
            q = queue_from_url(redis_url, name="jobs", namespace=namespace, secret=SECRET)
            try:
                return (await q.store.stats("jobs")).pending
            finally:
                await q.aclose()

        wait_for(lambda: asyncio.run(unfinished()) == 0, 90, "every task finished")
        code = cmd.terminate()
    finally:
        cmd.stop_group()
    out = cmd.output
    assert code == 0, out
    assert f"(pid {victim}) exited with -9" in out

    async def results() -> list[Any]:
        q = queue_from_url(redis_url, name="jobs", namespace=namespace, secret=SECRET)
        try:
            ids = [f"t{i}" for i in range(1000)]
            records = await q.store.get_many("jobs", ids)
            assert all(r is not None and r.state is TaskState.COMPLETED for r in records)
            return [q.serializer.loads(r.result) for r in records if r and r.result]
        finally:
            await q.aclose()

    assert asyncio.run(results()) == [i * i for i in range(1000)]
    seen = runs(ledger)
    count = Counter(r["id"] for r in seen)
    assert set(count) == {f"t{i}" for i in range(1000)}
    # A task runs again only if its earlier run was in the killed process (at-least-once).
    by_victim = {r["id"] for r in seen if r["pid"] == victim}
    unexplained = [i for i, n in count.items() if n > 1 and i not in by_victim]
    assert unexplained == []


@pytest.mark.parametrize("server", ["redis_url", "cluster_url", "embedded_url"])
def test_stats_json_schema(
    server: str, request: pytest.FixtureRequest, namespace: str, ledger: Path
) -> None:
    url = request.getfixturevalue(server)
    env = env_for(url, namespace, ledger)
    submit(
        env,
        """
import kew_plug
async def main():
    q = cli_app.queue
    await q.submit(cli_app.record, (1,), task_id="a")
    await q.submit(cli_app.fail, (3,), task_id="c", retries=0)
    await kew_plug.Worker(q).drain()
    await q.submit(cli_app.record, (2,), task_id="b", delay=3600)
    await q.submit(cli_app.record, (4,), task_id="d")
    await q.aclose()
asyncio.run(main())
""",
    )
    out = kew(env, "stats", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) == {"queues", "workers", "workers_by_queue"}
    (row,) = data["queues"]
    assert set(row) == {"name", "queued", "scheduled", "running", "dead", "oldest_waiting_s"}
    assert (row["name"], row["queued"], row["scheduled"], row["running"], row["dead"]) == (
        "jobs",
        1,
        1,
        0,
        1,
    )
    assert isinstance(row["oldest_waiting_s"], float) and 0 <= row["oldest_waiting_s"] < 60
    assert data["workers"] == 0 and data["workers_by_queue"] == {"jobs": 0}

    dead = json.loads(kew(env, "dead", "--queue", "jobs", "--json").stdout)
    (task,) = dead["tasks"]
    assert task["id"] == "c" and task["error"] == "ValueError: task 3 fails on purpose"
    assert task["attempts"] == 1 and isinstance(task["died_at"], float)
    shown = json.loads(kew(env, "inspect", "--queue", "jobs", "a", "--json").stdout)
    assert (shown["state"], shown["result"], shown["attempts"]) == ("completed", "1", 1)
    requeued = json.loads(kew(env, "requeue", "--queue", "jobs", "--all-dead", "--json").stdout)
    assert requeued["requeued"] == ["c"]
    refused = kew(env, "purge", "--queue", "jobs")
    assert refused.returncode == 2 and "add --yes" in refused.stderr
    purged = json.loads(kew(env, "purge", "--queue", "jobs", "--yes", "--json").stdout)
    assert purged["deleted"] >= 3
    after = json.loads(kew(env, "stats", "--queue", "jobs", "--json").stdout)
    assert after["queues"][0]["queued"] == 0


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics_after_a_known_workload(redis_url: str, namespace: str, ledger: Path) -> None:
    env = env_for(redis_url, namespace, ledger)
    submit(
        env,
        """
import kew_plug
async def main():
    q = cli_app.queue
    await q.submit_many([kew_plug.TaskSpec(cli_app.record, (i,)) for i in range(8)])
    await q.submit_many([kew_plug.TaskSpec(cli_app.fail, (i,), retries=0) for i in range(2)])
    await q.aclose()
asyncio.run(main())
""",
    )
    port = free_port()
    cmd = start_worker(env, ledger, "tests.cli_app:queue", "--metrics-port", str(port))
    q = '{event="%s",queue="jobs"}'
    try:
        seen = wait_for(
            lambda: (
                (m := _try_scrape(port)).get(f"kew_plug_tasks_total{q % 'completed'}") == 8
                and m.get(f"kew_plug_tasks_total{q % 'dead'}") == 2
                # Counters move as tasks end; the depth gauges only at the next refresh
                # (every second), which a loaded machine may not have reached yet.
                and m.get('kew_plug_queue_depth{queue="jobs",state="dead"}') == 2
                and m
            ),
            30,
            "metrics for 10 tasks",
        )
        code = cmd.terminate()
    finally:
        cmd.stop_group()
    out = cmd.output
    assert code == 0, out
    assert seen[f"kew_plug_tasks_total{q % 'claimed'}"] == 10
    assert seen[f"kew_plug_tasks_total{q % 'retried'}"] == 0
    assert seen['kew_plug_task_duration_seconds_count{queue="jobs"}'] == 10
    assert seen['kew_plug_claim_to_start_seconds_count{queue="jobs"}'] == 10
    assert seen['kew_plug_store_errors_total{queue="jobs"}'] == 0


def _try_scrape(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}  # not listening yet


@pytest.fixture
def password_server() -> Iterator[str]:
    with RedisServer(extra_args=("--requirepass", "right-password")) as server:
        yield f"redis://127.0.0.1:{server.port}/0"


@pytest.mark.parametrize(
    ("target", "url", "message"),
    [
        ("no_such_module:queue", None, "cannot import 'no_such_module'"),
        ("tests.cli_app:nothing", None, "has no attribute 'nothing'"),
        ("tests.cli_app:NOT_A_QUEUE", None, "is of type int, not a kew_plug Queue"),
        ("tests.cli_app:fail", None, "'tests.cli_app:fail' is a function that needs arguments"),
        ("tests.cli_app:queue", "redis://127.0.0.1:{free}/0", "cannot reach Redis"),
        ("tests.cli_app:queue", "redis://:wrong@{password}", "credentials|password"),
        ("tests.cli_app:queue", "redis://{password}", "credentials|password"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(
    target: str,
    url: str | None,
    message: str,
    redis_url: str,
    password_server: str,
    namespace: str,
    ledger: Path,
) -> None:
    where = password_server.removeprefix("redis://")
    url = (url or redis_url).format(free=free_port(), password=where)
    out = kew(env_for(url, namespace, ledger), "worker", target, "--check")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(message, lines[0]), out.stderr


def test_check_passes_for_a_good_configuration(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    out = kew(env_for(redis_url, namespace, ledger), "worker", "tests.cli_app:queue", "--check")
    assert out.returncode == 0, out.stderr
    assert "store reachable" in out.stdout


def test_a_crash_looping_worker_is_restarted_with_growing_pauses(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    env = env_for(redis_url, namespace, ledger)
    cmd = start_worker(env, ledger, "tests.cli_app:crashing_queue")
    try:
        wait_for(
            lambda: cmd.output.count("restarting in") >= 3 or cmd.proc.poll() is not None,
            60,
            "three restarts",
        )
        assert cmd.proc.poll() is None, cmd.output
        code = cmd.terminate()
    finally:
        cmd.stop_group()
    rest = cmd.output
    lines = rest.splitlines()
    pauses = [
        float(x.split("restarting in ")[1].split(" s")[0]) for x in lines if "restarting" in x
    ]
    assert pauses[:3] == [0.5, 1.0, 2.0]
    assert all("exited with 3" in x for x in lines if "restarting" in x)
    assert code == 0, rest


def test_queue_from_url_and_env_build_the_same_queue(redis_url: str, namespace: str) -> None:
    from kew_plug.settings import queue_from_env

    by_url = queue_from_url(redis_url, name="jobs", namespace=namespace, result_ttl=60)
    by_env = queue_from_env(
        "jobs",
        {"KEW_PLUG_URL": redis_url, "KEW_PLUG_NAMESPACE": namespace, "KEW_PLUG_RESULT_TTL": "60"},
    )
    for q in (by_url, by_env):
        assert isinstance(q, Queue) and q.name == "jobs"
        assert q.store.namespace == namespace  # type: ignore[attr-defined]
        assert q.store.result_ttl_ms == 60_000  # type: ignore[attr-defined]
    asyncio.run(by_url.aclose())
    asyncio.run(by_env.aclose())


def test_a_second_signal_stops_at_once(redis_url: str, namespace: str, ledger: Path) -> None:
    env = env_for(redis_url, namespace, ledger)
    cmd = start_worker(env, ledger, "tests.cli_app:queue", "--shutdown-timeout", "60")
    try:
        submit(
            env,
            "async def main():\n"
            "    await cli_app.queue.submit(cli_app.hang, (1,))\n"
            "    await cli_app.queue.aclose()\n"
            "asyncio.run(main())",
        )
        wait_for(lambda: runs(ledger), 30, "the hanging task to start")
        cmd.proc.send_signal(signal.SIGTERM)  # graceful: would wait up to 60 s for the task
        wait_for(lambda: "stopping 1 worker processes" in cmd.output, 30, "the first stop")
        code = cmd.terminate(timeout=15)  # the second signal: the command ends at once
    finally:
        cmd.stop_group()
    out = cmd.output
    assert code == 1, out
    assert "second signal: killing 1 worker processes" in out


DEAD_D1_D2_D3 = """
import kew_plug
async def main():
    for i in (1, 2, 3):
        await cli_app.queue.submit(cli_app.fail, (i,), task_id=f"d{i}", retries=0)
    await kew_plug.Worker(cli_app.queue).drain()
    await cli_app.queue.aclose()
asyncio.run(main())
"""


def test_the_store_is_optional_and_ids_go_anywhere(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    env = env_for(redis_url, namespace, ledger)
    submit(env, DEAD_D1_D2_D3)

    def requeued(env: dict[str, str], *args: str) -> list[str]:
        out = kew(env, "requeue", *args, "--json")
        assert out.returncode == 0, out.stderr
        return list(json.loads(out.stdout)["requeued"])

    def found(env: dict[str, str], *args: str) -> bool:
        out = kew(env, "inspect", *args, "--json")
        assert out.returncode == 0, out.stderr
        return bool(json.loads(out.stdout)["found"])

    # With KEW_PLUG_URL set, an ID is not taken for the store.
    assert requeued(env, "--queue", "jobs", "d1", "d2") == ["d1", "d2"]
    # The README's form: the URL first, the IDs after the options.
    assert requeued(env, redis_url, "--queue", "jobs", "d3") == ["d3"]
    assert found(env, redis_url, "--queue", "jobs", "d1")
    assert found(env, "--queue", "jobs", "d1")
    no_url = {k: v for k, v in env.items() if k != "KEW_PLUG_URL"}
    assert found(no_url, "--queue", "jobs", redis_url, "d2")
    missing = kew(no_url, "inspect", "--queue", "jobs", "d2")
    assert missing.returncode == 2 and "give the store URL" in missing.stderr, missing.stderr
    # A mistyped URL is not taken for an ID (the command would go to KEW_PLUG_URL's store).
    typo = kew(env, "requeue", "rediss//127.0.0.1:1/0", "--queue", "jobs", "d1")
    assert typo.returncode == 2 and "mistyped scheme" in typo.stderr, typo.stderr
    unknown = kew(env, "requeue", "--queue", "jobs", "d1", "--bogus")
    assert unknown.returncode == 2 and "unrecognized arguments: --bogus" in unknown.stderr
    # worker targets too: the second one is loaded (and refused), not left over.
    out = kew(env, "worker", "tests.cli_app:queue", "--check", "tests.cli_app:NOT_A_QUEUE")
    assert out.returncode == 2 and "NOT_A_QUEUE' is of type int" in out.stderr, out.stderr


def test_inspect_of_a_missing_task_exits_1_naming_it(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    env = env_for(redis_url, namespace, ledger)
    out = kew(env, "inspect", redis_url, "--queue", "jobs", "nosuchid")
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stderr == "kew-plug inspect: no task 'nosuchid' in queue 'jobs'\n"
    as_json = kew(env, "inspect", "--queue", "jobs", "nosuchid", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["found"] is False


def test_dead_shows_the_end_of_each_traceback(redis_url: str, namespace: str, ledger: Path) -> None:
    env = env_for(redis_url, namespace, ledger)
    submit(env, DEAD_D1_D2_D3)
    out = kew(env, "dead", "--queue", "jobs", "--json")
    assert out.returncode == 0, out.stderr
    tails = {t["id"]: t["traceback_tail"] for t in json.loads(out.stdout)["tasks"]}
    tail = tails["d1"]
    # The task's own frame and its error, not kew-plug's outer frames.
    assert tail[-1] == "ValueError: task 1 fails on purpose"
    assert re.fullmatch(r'  File ".*cli_app\.py", line \d+, in fail', tail[-3]), tail
    assert tail[-2].strip() == 'raise ValueError(f"task {i} fails on purpose")'
    assert not any("runner.py" in line or set(line.strip()) <= set("^~") for line in tail), tail
    table = kew({**env, "COLUMNS": "80"}, "dead", "--queue", "jobs")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert max(map(len, lines)) <= 80, table.stdout
    assert "cli_app.py" in table.stdout and "in fail" in table.stdout
    assert sum("ValueError: task 1 fails on purpose" in line for line in lines) == 1


def test_a_chained_tracebacks_tail_is_led_by_the_tasks_own_frame() -> None:
    # A thread stuck past its timeout: its stack is the cause, in the first section; the
    # last lines are kew-plug's and the TaskTimeout.
    from kew_plug.cli.inspect import STDLIB, traceback_tail

    lines = [
        "kew_plug.executors.ForeignTraceback: ",
        "kew-task-1 was here:",
        f'  File "{STDLIB}/threading.py", line 1002, in _bootstrap',
        "    self._bootstrap_inner()",
        '  File "/srv/app/tasks.py", line 19, in slow_sync',
        "    time.sleep(10)",
        "",
        "The above exception was the direct cause of the following exception:",
        "",
        "Traceback (most recent call last):",
        '  File "/venv/lib/kew_plug/runner.py", line 74, in execute',
        "    result = await self._call(fn, args, kwargs, timeout)",
        '  File "/venv/lib/kew_plug/executors.py", line 104, in run',
        "    raise error from ForeignTraceback(...)",
        "kew_plug.errors.TaskTimeout: ran over its timeout of 1 s",
    ]
    tail = traceback_tail(lines)
    assert tail[:3] == [
        '  File "/srv/app/tasks.py", line 19, in slow_sync',
        "    time.sleep(10)",
        "  ...",
    ]
    assert tail[-1] == "kew_plug.errors.TaskTimeout: ran over its timeout of 1 s"
    # A plain error's tail has the task's frame already: nothing is added.
    plain = ["Traceback (most recent call last):", *lines[10:12], *lines[4:6], "ValueError: x"]
    assert traceback_tail(plain)[0] == lines[10]


def test_check_never_runs_a_task_function(
    redis_url: str, namespace: str, ledger: Path, tmp_path: Path
) -> None:
    (tmp_path / "periodic_app.py").write_text(
        """
import pathlib
from kew_plug.settings import queue_from_env

queue = queue_from_env("jobs")


def tick():
    pathlib.Path(__file__).with_name("ran").write_text("tick ran")


queue.periodic(tick, every=60)


def answer():
    return 42
"""
    )
    env = {**env_for(redis_url, namespace, ledger), "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    for target, message in [
        ("periodic_app:tick", "'periodic_app:tick' is a periodic task of queue 'jobs'"),
        (
            "periodic_app:answer",
            "'periodic_app:answer' returned an object of type int, not a kew_plug Queue",
        ),
    ]:
        out = kew(env, "worker", target, "--check")
        assert out.returncode == 2, out.stdout + out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], out.stderr
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "args", [("workers", "--json"), ("stats",), ("dead", "--queue", "jobs"), ("--help",)]
)
def test_a_closed_stdout_ends_the_command_quietly(
    args: tuple[str, ...], redis_url: str, namespace: str, ledger: Path
) -> None:
    read, write = os.pipe()
    os.close(read)  # as `| head -1` does once it has its line: every write fails
    env = env_for(redis_url, namespace, ledger)
    env.pop("PYTHONUNBUFFERED", None)  # stdout buffered, as in a shell: fails at the flush
    try:
        out = subprocess.run(
            [sys.executable, "-m", "kew_plug", *args],
            env=env,
            cwd=ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write)
    assert (out.returncode, out.stderr) == (1, "")


def test_a_command_started_without_stdout_still_runs(
    redis_url: str, namespace: str, ledger: Path
) -> None:
    # `cmd >&-`: Python has no sys.stdout at all; a check must not fail on that.
    out = subprocess.run(
        [sys.executable, "-m", "kew_plug", "worker", "tests.cli_app:queue", "--check"],
        env=env_for(redis_url, namespace, ledger),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),
    )
    assert out.returncode == 0, out.stderr


def test_dashboard_prints_the_url_it_serves(redis_url: str, namespace: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kew_plug", "dashboard", redis_url, "--port", "0"],
        env={**os.environ, "KEW_PLUG_NAMESPACE": namespace},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the port is bound
        found = re.fullmatch(r"kew-plug dashboard: serving (http://127\.0\.0\.1:\d+/)\n", line)
        assert found, line
        with urllib.request.urlopen(found.group(1), timeout=10) as page:
            assert page.status == 200 and "<table" in page.read().decode()
        # The port it serves is taken: a second dashboard says so in one line.
        port = found.group(1).rsplit(":", 1)[1].rstrip("/")
        taken = kew(os.environ.copy(), "dashboard", redis_url, "--port", port)
        assert taken.returncode == 2 and "cannot listen" in taken.stderr, taken.stderr
    finally:
        proc.terminate()
        proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
