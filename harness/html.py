"""The run's picture: one self-contained HTML file (Plotly, its JavaScript inlined, so it
needs no network) with the summary and every check, a timeline with one lane per process
(each task run a bar coloured by how it ended), faults as vertical markers, breaker open
and half-open periods as bands, throughput over time, and the tasks a failing check names
highlighted. Past MAX_BARS runs the timeline shows counts per lane and time bin instead of
one bar per run, so a 100,000-task run still loads fast."""

from __future__ import annotations

import html
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

MAX_BARS = 20_000
DONE, RETRIED, DEAD = "completed", "failed (retried)", "dead"
AGAIN, CUT = "run again after a fault", "cut short (killed, stopped or lost)"
STALE = "finished late: settlement refused (lease lost)"
COLOURS = {DONE: "#2e9e5b", RETRIED: "#f0a030", DEAD: "#d33c3c", AGAIN: "#8a5cd0"}
COLOURS |= {STALE: "#b5651d", CUT: "#9aa0a6"}
FAULT_COLOURS = {"kill": "#d33c3c", "pause": "#8a5cd0", "stop": "#1f77b4", "restart": "#444"}
ID_PATTERN = re.compile(r"\b[\w.-]+-\d+\b")
HOVER = "%{customdata}<br>%{base:.3f} s for %{x:.3f} s"
SUMMARY_KEYS = ("ok", "tasks", "procs", "store", "serializer", "breaker", "roles", "scenario",
                "wall_s", "tasks_per_s")  # fmt: skip

Record = dict[str, Any]


def lanes_of(records: list[Record]) -> dict[int, str]:
    """pid -> lane label, in the order the processes said hello (replacements last)."""
    lanes: dict[int, str] = {}
    for r in sorted(records, key=lambda r: r["t"]):
        if r["e"] == "hello" and r["p"] not in lanes:
            roles = (("submit", r.get("submits")), ("work", r.get("works")))
            role = "+".join(name for name, on in roles if on)
            lanes[r["p"]] = f"p{r.get('i', len(lanes))} {role} ({r['p']})"
    for r in records:
        lanes.setdefault(r["p"], f"pid {r['p']}")
    return lanes


def runs(records: list[Record]) -> list[Record]:
    """One row per task run: its process, start, end, outcome and task id."""
    ends: dict[tuple[str, Any], tuple[float, str]] = {}
    for r in records:
        if r["e"] in ("ok", "err") and "id" in r:
            ends[(r["id"], r.get("k"))] = (r["t"], DONE if r["e"] == "ok" else RETRIED)
    dead = {r["id"] for r in records if r["e"] == "dead"}
    stale = {(r["id"], r.get("k")) for r in records if r["e"] == "stale"}
    last_seen: dict[int, float] = defaultdict(float)
    for r in records:
        last_seen[r["p"]] = max(last_seen[r["p"]], r["t"])
    ended: dict[str, list[str]] = defaultdict(list)  # id -> outcomes of its earlier runs
    out = []
    for r in sorted((r for r in records if r["e"] == "run"), key=lambda r: r["t"]):
        end, outcome = ends.get((r["id"], r.get("k")), (last_seen[r["p"]], CUT))
        if outcome == RETRIED and r["id"] in dead:
            outcome = DEAD
        if outcome == DONE and (r["id"], r.get("k")) in stale:
            outcome = STALE
        elif outcome == DONE and {CUT, STALE} & set(ended[r["id"]]):
            outcome = AGAIN  # an earlier run was killed, paused past its lease or stopped
        ended[r["id"]].append(outcome)
        end = max(end, r["t"] + 0.0005)  # a run too short to see still shows
        out.append({"pid": r["p"], "start": r["t"], "end": end, "outcome": outcome, "id": r["id"]})
    return out


def named_ids(data: Record, known: set[str]) -> set[str]:
    """Task ids that failing checks name (in their messages, or listed in the report)."""
    found = {m for f in data.get("failures", []) for m in ID_PATTERN.findall(f)}
    for ids in (data.get("failing_ids") or {}).values():
        found |= set(ids)
    return found & known


def breaker_bands(records: list[Record], reset: float) -> list[tuple[float, float, str]]:
    """(start, end, "open" | "half-open") after each trip a breaker reported (wall clock)."""
    trips = sorted(
        r["t"]
        for r in records
        if (r["e"] == "bdec" and r.get("kind") == "tripped") or r["e"] == "bopen"
    )
    bands = []
    for n, t in enumerate(trips):
        nxt = trips[n + 1] if n + 1 < len(trips) else t + 2 * reset
        bands.append((t, min(t + reset, nxt), "open"))
        if t + reset < nxt:
            bands.append((t + reset, min(nxt, t + 2 * reset), "half-open"))
    return bands


def _bars(fig: go.Figure, rows: list[Record], lanes: dict[int, str], t0: float) -> None:
    for outcome, colour in COLOURS.items():
        chosen = [r for r in rows if r["outcome"] == outcome]
        if chosen:
            bars = go.Bar(
                orientation="h",
                y=[lanes[r["pid"]] for r in chosen],
                x=[r["end"] - r["start"] for r in chosen],
                base=[r["start"] - t0 for r in chosen],
                marker={"color": colour, "line": {"width": 0}},
                name=outcome,
                customdata=[r["id"] for r in chosen],
                hovertemplate=HOVER + f"<extra>{outcome}</extra>",
            )
            fig.add_trace(bars, row=1, col=1)


def _binned(fig: go.Figure, rows: list[Record], lanes: dict[int, str], t0: float) -> None:
    width = max(0.05, (max(r["end"] for r in rows) - t0) / 400)
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for r in rows:
        counts[(lanes[r["pid"]], int((r["start"] - t0) / width))] += 1
    marker = {"symbol": "square", "size": 9, "color": list(counts.values())}
    marker |= {"colorscale": "Greens", "showscale": True}
    cells = go.Scatter(
        x=[b * width for _, b in counts],
        y=[lane for lane, _ in counts],
        mode="markers",
        marker=marker,
        name=f"runs started per {width:.2f} s ({len(rows)} runs, aggregated)",
    )
    fig.add_trace(cells, row=1, col=1)


def _reruns(fig: go.Figure, rows: list[Record], lanes: dict[int, str], t0: float) -> None:
    """Runs after a fault are short bars: a marker each, so they can be seen."""
    again = [r for r in rows if r["outcome"] == AGAIN]
    if again:
        points = go.Scatter(
            x=[r["start"] - t0 for r in again],
            y=[lanes[r["pid"]] for r in again],
            text=[r["id"] for r in again],
            mode="markers",
            marker={"symbol": "diamond", "size": 8, "color": COLOURS[AGAIN]},
            name=f"{AGAIN} ({len(again)})",
        )
        fig.add_trace(points, row=1, col=1)


def _highlights(fig: go.Figure, data: Record, records: list[Record], rows: list[Record],
                lanes: dict[int, str], t0: float) -> None:  # fmt: skip
    chosen = named_ids(data, {r["id"] for r in rows} | {r.get("id", "") for r in records})
    marked = [(r["start"], r["pid"], r["id"]) for r in rows if r["id"] in chosen]
    marked += [
        (r["t"], r["p"], r["id"]) for r in records if r["e"] == "sub" and r.get("id") in chosen
    ]
    if marked:
        points = go.Scatter(
            x=[t - t0 for t, _, _ in marked],
            y=[lanes[p] for _, p, _ in marked],
            text=[i for _, _, i in marked],
            mode="markers",
            marker={"symbol": "x", "size": 12, "color": "#000"},
            name="named by a failing check",
        )
        fig.add_trace(points, row=1, col=1)


def _faults(fig: go.Figure, data: Record, t0: float) -> None:
    for fault in data.get("fault_log", []):
        if "wall" not in fault or fault.get("kind") == "skipped":
            continue
        x, colour = fault["wall"] - t0, FAULT_COLOURS.get(fault["kind"], "#444")
        fig.add_vline(x=x, line={"color": colour, "width": 2, "dash": "dash"})
        label = f"{fault['kind']} {fault.get('pid', '')}".strip()
        fig.add_annotation(
            x=x, y=1.0, yref="paper", text=label, showarrow=False, textangle=-30,
            font={"color": colour, "size": 11}, yanchor="bottom",
        )  # fmt: skip


def _throughput(fig: go.Figure, rows: list[Record], t0: float) -> None:
    done = sorted(r["end"] - t0 for r in rows if r["outcome"] in (DONE, AGAIN))
    if not done:
        return
    step = max(0.05, done[-1] / 200)
    bins: dict[int, int] = defaultdict(int)
    for t in done:
        bins[int(t / step)] += 1
    xs = sorted(bins)
    line = go.Scatter(
        x=[b * step for b in xs],
        y=[bins[b] / step for b in xs],
        mode="lines",
        line={"color": COLOURS[DONE]},
        name="completed per second",
        showlegend=False,
    )
    fig.add_trace(line, row=2, col=1)


def figure(data: Record, records: list[Record]) -> go.Figure:
    lanes = lanes_of(records)
    t0 = min((r["t"] for r in records), default=0.0)
    rows = runs(records)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.05,
        subplot_titles=("task runs by process", "tasks completed per second"),
    )  # fmt: skip
    if len(rows) <= MAX_BARS:
        _bars(fig, rows, lanes, t0)
    else:
        _binned(fig, rows, lanes, t0)
    _reruns(fig, rows, lanes, t0)
    _highlights(fig, data, records, rows, lanes, t0)
    _faults(fig, data, t0)
    reset = float((data.get("breaker_report") or {}).get("reset_timeout", 0.3))
    for start, end, kind in breaker_bands(records, reset):
        colour = "#d33c3c" if kind == "open" else "#f0d040"
        fig.add_vrect(x0=start - t0, x1=end - t0, fillcolor=colour, opacity=0.15, line_width=0)
    _throughput(fig, rows, t0)
    labels = list(lanes.values())
    fig.update_yaxes(categoryorder="array", categoryarray=labels[::-1], row=1, col=1)
    fig.update_xaxes(title_text="seconds since the first record", row=2, col=1)
    fig.update_layout(
        barmode="overlay", height=440 + 34 * len(lanes), legend={"orientation": "h", "y": -0.15},
        margin={"l": 10, "r": 10, "t": 70, "b": 40},
    )  # fmt: skip
    return fig


def _row(*cells: object, cls: str = "") -> str:
    tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
    return f'<tr class="{cls}">{tds}</tr>'


def summary(data: Record) -> str:
    failing = {f.split(":", 1)[0] for f in data.get("failures", [])}
    head = "".join(_row(k, data.get(k)) for k in SUMMARY_KEYS)
    faults = ", ".join(f"{k}={v}" for k, v in (data.get("faults") or {}).items() if v)
    head += _row("faults", faults or "none")
    checks = ""
    for name, value in sorted((data.get("checks") or {}).items()):
        verdict = "FAIL" if name in failing else "pass"
        checks += _row(name, value, verdict, cls=verdict.lower())
    failures = "".join(f"<li>{html.escape(f)}</li>" for f in data.get("failures", []))
    title = "OK" if data.get("ok") else "FAILED"
    return (
        f"<h1>kew-plug harness: {title}</h1>"
        f'<div class="cols"><table id="summary">{head}</table>'
        f'<table id="checks"><tr><th>check</th><th>count</th><th></th></tr>{checks}</table>'
        "</div>" + (f'<ul id="failures">{failures}</ul>' if failures else "")
    )


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.2rem; color: #1d2433; }
table { border-collapse: collapse; margin: 0 1.5rem 1rem 0; }
th, td { border-bottom: 1px solid #dde2ea; padding: .25rem .6rem; text-align: left; }
tr.fail td { color: #b00020; font-weight: 600; }
.cols { display: flex; align-items: flex-start; }
#failures { color: #b00020; }
"""


def write(path: str | Path, data: Record, records: Sequence[Mapping[str, Any]]) -> Path:
    """Write the picture of one run: its report `data` and its ledger `records`."""
    plot = figure(data, [dict(r) for r in records]).to_html(
        full_html=False, include_plotlyjs=True, div_id="timeline"
    )
    page = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>kew-plug harness report</title><style>{STYLE}</style></head><body>"
        f"{summary(data)}{plot}</body></html>"
    )
    out = Path(path)
    out.write_text(page, encoding="utf-8")
    return out
