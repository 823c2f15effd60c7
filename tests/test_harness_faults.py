"""Faults with real processes: kills, zombies, server restarts and dropped connections
must leave nothing lost and nothing run twice without a fault to explain it."""

from __future__ import annotations

import pytest

import harness
from harness.servers import redis_server_binary
from tests.helpers import harness_cli

pytestmark = pytest.mark.multiprocess
CLEAN = ("lost", "duplicated", "unexpected", "wrong_results", "dead", "payloads_left")


def assert_clean(report: harness.Report) -> None:
    evidence = {k: report.data.get(k) for k in ("checks", "fault_log", "duplicated_evidence")}
    assert report.ok, (report.data["failures"], evidence)
    checks = report.data["checks"]
    assert all(checks[name] == 0 for name in CLEAN), checks


def test_kills_and_pauses_on_the_embedded_server() -> None:
    report = harness.run(
        procs=3, tasks=800, faults={"kill": 2, "pause": 2}, lease=2.0, task_ms=2.0,
        seed=11, progress=False, timeout=90,
    )  # fmt: skip
    assert_clean(report)
    kinds = [e["kind"] for e in report.data["fault_log"]]
    assert kinds.count("kill") == 2 and kinds.count("pause") == 2
    assert kinds.count("resume") == 2  # every stopped process was continued


def test_a_whole_machine_freeze_past_the_lease_is_explained_by_what_workers_saw() -> None:
    # Every process and the server stop for 1.5 leases while tasks run (20 ms bodies keep
    # claims held). The freeze itself explains nothing: reruns, extra attempts and deaths
    # must each be explained by a lapse a worker saw by its own clock.
    report = harness.run(
        procs=3, tasks=600, scenario="retry", faults={"freeze": 1}, lease=1.0, task_ms=20.0,
        seed=3, progress=False, timeout=90,
    )  # fmt: skip
    assert_clean(report)
    kinds = [e["kind"] for e in report.data["fault_log"]]
    assert kinds.count("freeze") == 1 and kinds.count("resume") >= 4  # 3 workers + server
    assert report.data["checks"]["lapsed"] > 0


@pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server")
def test_restart_and_drop_on_an_owned_redis_server() -> None:
    report = harness.run(
        procs=3, tasks=800, store="redis", faults={"kill": 1, "restart": 1, "drop": 1},
        lease=2.0, task_ms=2.0, seed=5, progress=False, timeout=90,
    )  # fmt: skip
    assert_clean(report)
    kinds = {e["kind"] for e in report.data["fault_log"]}
    assert {"kill", "restart", "drop"} <= kinds


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--store", "redis", "--redis-url", "redis://127.0.0.1:1/0", "--faults", "restart=1"],
         "never restarts a server it did not start"),
        (["--faults", "drop=1"], "needs a real server"),
    ],
)  # fmt: skip
def test_faults_the_store_cannot_take_are_refused(args: list[str], says: str) -> None:
    out = harness_cli(*args, timeout=60)
    assert out.returncode == 2 and says in out.stderr
