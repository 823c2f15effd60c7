"""The harness on a Redis Cluster it owns: queues spread over the primaries, and a primary
killed mid-run, behind a lagging replica, while replicas=1 makes every write wait for it."""

from __future__ import annotations

import pytest

import harness
from harness.servers import redis_server_binary
from tests.helpers import harness_cli
from tests.test_harness_faults import assert_clean

pytestmark = [
    pytest.mark.multiprocess,
    pytest.mark.skipif(redis_server_binary() is None, reason="no redis-server"),
]


def test_queues_spread_over_all_three_primaries() -> None:
    report = harness.run(procs=3, tasks=900, store="redis-cluster", queues=6, progress=False)
    assert_clean(report)
    per_node = report.data["keys_per_node"]
    assert len(per_node) == 3 and all(n > 0 for n in per_node.values()), per_node
    assert report.data["checks"]["cross_process"] > 0


def test_failover_behind_a_lagging_replica_loses_nothing_with_replicas_one() -> None:
    # The replica misses the primary's last 0.5 s of writes; with replicas=1 none of them
    # was acknowledged, so nothing acknowledged is lost and nothing runs twice.
    report = harness.run(
        procs=3, tasks=1500, store="redis-cluster", queues=3, replicas=1, failover_lag=0.5,
        faults={"failover": 1}, lease=2.0, task_ms=2.0, seed=3, progress=False, timeout=120,
    )  # fmt: skip
    assert_clean(report)
    (failover,) = [e for e in report.data["fault_log"] if e["kind"] == "failover"]
    assert failover["new_primary"] != failover["old_primary"] and failover["lag_s"] == 0.5


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--replicas", "1"], "--replicas N needs --store redis-cluster"),
        (["--store", "redis-cluster", "--redis-url", "redis+cluster://127.0.0.1:1",
          "--faults", "failover=1"], "needs a cluster the harness owns"),
        (["--store", "redis-cluster", "--redis-url", "redis://127.0.0.1:1"],
         "takes a redis+cluster://host:port URL"),
        (["--store", "redis-cluster", "--failover-lag", "3"], "between 0 and 1.5 s"),
    ],
)  # fmt: skip
def test_cluster_options_the_run_cannot_take_are_refused(args: list[str], says: str) -> None:
    out = harness_cli(*args, timeout=60)
    assert out.returncode == 2 and says in out.stderr, out.stderr
