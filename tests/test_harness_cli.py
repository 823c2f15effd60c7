"""`python -m harness` as a user runs it: exit codes, one-line errors, the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import harness_cli

pytestmark = pytest.mark.multiprocess
harness = harness_cli


def test_default_run_exits_zero_and_writes_the_json_report(tmp_path: Path) -> None:
    out = harness("--procs", "2", "--tasks", "200", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ok"] is True and report["store"] == "fakeredis"
    assert report["checks"]["lost"] == 0 and report["checks"]["payloads_left"] == 0
    assert sum(p["completed"] for p in report["per_process"].values()) == 200


def test_memory_store_across_processes_exits_one_with_tasks_lost() -> None:
    out = harness("--store", "memory", "--roles", "split", "--procs", "2", "--tasks", "40")
    assert out.returncode == 1
    assert "lost: 40 tasks" in out.stdout
    assert "own memory" in out.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--store", "nosuch"], "unknown store 'nosuch'"),
        (["--store", "redis", "--redis-url", "redis://127.0.0.1:1/0"], "cannot reach Redis"),
        (["--store", "nomodule_xyz:factory"], "cannot import 'nomodule_xyz'"),
        (["--roles", "split", "--procs", "1"], "needs at least 2 processes"),
        (["--serializer", "pickle"], "--task-kind module"),
    ],
)
def test_bad_configuration_exits_two_with_one_line(args: list[str], says: str) -> None:
    out = harness(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], out.stderr
