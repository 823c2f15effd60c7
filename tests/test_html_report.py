"""The run's picture from a synthetic ledger: one lane per process, outcomes coloured,
faults marked, failing tasks highlighted, and aggregation past MAX_BARS runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import html

T = 1_000_000.0


def ledger() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i, pid in enumerate((11, 22, 33)):
        records.append(
            {"e": "hello", "p": pid, "t": T + i * 0.01, "i": i, "submits": True, "works": True}
        )
    for n in range(30):
        pid = (11, 22, 33)[n % 3]
        start = T + 0.1 + n * 0.01
        records.append({"e": "run", "p": pid, "t": start, "id": f"ns-{n}", "k": n, "a": 1})
        if n != 3:  # task 3's runner is killed mid-run
            records.append({"e": "ok", "p": pid, "t": start + 0.02, "id": f"ns-{n}", "k": n})
    records.append({"e": "run", "p": 22, "t": T + 0.9, "id": "ns-3", "k": 99, "a": 2})
    records.append({"e": "ok", "p": 22, "t": T + 0.95, "id": "ns-3", "k": 99})
    return records


DATA = {
    "ok": False,
    "tasks": 30,
    "procs": 3,
    "checks": {"lost": 1, "duplicated": 0},
    "failures": ["lost: 1 tasks accepted by the store were never completed (e.g. ns-7)"],
    "fault_log": [{"kind": "kill", "pid": 11, "t": 0.3, "wall": T + 0.45}],
}


def test_one_lane_per_process_and_every_outcome(tmp_path: Path) -> None:
    records = ledger()
    rows = html.runs(records)
    assert len(rows) == 31
    again = [r["outcome"] for r in rows if r["id"] == "ns-3"]
    assert again == [html.CUT, html.AGAIN]  # killed mid-run on 11, run again on 22
    assert sum(r["outcome"] == html.CUT for r in rows) == 1
    fig = html.figure(DATA, records)
    lanes = {y for trace in fig.data if trace.type == "bar" for y in trace.y}
    assert lanes == set(html.lanes_of(records).values()) and len(lanes) == 3
    (marks,) = [t for t in fig.data if t.name == "named by a failing check"]
    assert list(marks.text) == ["ns-7"]
    assert any(shape.line.dash == "dash" for shape in fig.layout.shapes)  # the kill
    page = html.write(tmp_path / "r.html", DATA, records).read_text()
    assert "<script" in page and "cdn" not in page.split("<script", 1)[0]
    assert "lost: 1 tasks accepted" in page and 'class="fail"' in page


def test_many_runs_are_aggregated(tmp_path: Path) -> None:
    records = [{"e": "hello", "p": 1, "t": T, "i": 0, "works": True}]
    for n in range(html.MAX_BARS + 1):
        records.append({"e": "run", "p": 1, "t": T + n / 1000, "id": f"x-{n}", "k": n})
        records.append({"e": "ok", "p": 1, "t": T + n / 1000 + 0.001, "id": f"x-{n}", "k": n})
    fig = html.figure({"checks": {}}, records)
    assert not any(trace.type == "bar" for trace in fig.data)
    (cells,) = [t for t in fig.data if t.name and "aggregated" in t.name]
    assert sum(cells.marker.color) == html.MAX_BARS + 1
