"""One configuration: `harness.run()` and the CLI resolve the same defaults, once; and the
drain's view of which tasks the ledger shows finished."""

from __future__ import annotations

import pytest

from harness.cli import parse_args
from harness.config import ConfigError, RunConfig
from harness.drain import Settlements


def test_cli_and_run_share_every_default() -> None:
    assert parse_args([]).resolve() == RunConfig().resolve()
    cli = parse_args(["--faults", "kill=2", "--scenario", "long"]).resolve()
    api = RunConfig(faults={"kill": 2}, scenario="long").resolve()
    assert cli == api


def test_defaults_are_derived_once() -> None:
    cfg = RunConfig().resolve()
    assert (cfg.lease, cfg.task_ms, cfg.faults["stop"]) == (2.0, 0.0, 1)
    assert RunConfig(faults={"pause": 1}).resolve().task_ms == 2.0
    assert RunConfig(scenario="long").resolve().lease == 2.0
    assert RunConfig(lease=5.0, task_ms=1.0).resolve().lease == 5.0
    assert cfg.resolve() is cfg  # resolving again validates nothing twice


@pytest.mark.parametrize(
    ("options", "says"),
    [({"lease": 0.0}, "--lease"), ({"faults": {"bogus": 1}}, "unknown faults")],
)
def test_bad_values_are_refused_once_resolved(options: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        RunConfig(**options).resolve()  # type: ignore[arg-type]


def record(e: str, task_id: str, k: int, c: float = 0.0) -> dict[str, object]:
    return {"e": e, "p": 1, "t": c, "id": task_id, "k": k, "c": c}


def test_a_completion_whose_settlement_was_refused_is_not_finished() -> None:
    book = Settlements()
    for r in (record("run", "a", 1), record("ok", "a", 1)):
        book.add(r)  # type: ignore[arg-type]
    assert book.finished() == {"a"}
    book.add(record("stale", "a", 1))  # type: ignore[arg-type]
    assert book.finished() == set()


def test_a_task_run_again_is_finished_only_by_its_latest_run() -> None:
    book = Settlements()
    for r in (record("run", "a", 1, 1.0), record("run", "a", 2, 2.0), record("ok", "a", 1)):
        book.add(r)  # type: ignore[arg-type]
    assert book.finished() == set()
    book.add(record("ok", "a", 2, 2.5))  # type: ignore[arg-type]
    assert book.finished() == {"a"}
