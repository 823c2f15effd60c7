"""The ledger: one append-only JSON-lines file per process, independent of the store under
test. Each record is one `write(2)` on an O_APPEND descriptor, so a record that was written
survives the process being SIGKILLed a moment later."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.events import Record


class LedgerWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pid = os.getpid()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, event: str, **fields: Any) -> None:
        fields["e"], fields["p"], fields["t"] = event, self.pid, time.time()
        os.write(self._fd, (json.dumps(fields, separators=(",", ":")) + "\n").encode())

    def write_many(self, event: str, rows: list[dict[str, Any]]) -> None:
        """Several records in one write (a batch the store accepted in one call)."""
        now, lines = time.time(), []
        for row in rows:
            row["e"], row["p"], row["t"] = event, self.pid, now
            lines.append(json.dumps(row, separators=(",", ":")))
        if lines:
            os.write(self._fd, ("\n".join(lines) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


class LedgerTail:
    """Reads new complete lines from every ledger file in a folder, for progress."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._offsets: dict[Path, int] = {}

    def poll(self) -> Iterator[Record]:
        for path in sorted(self.folder.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            for line in data[:end].splitlines():
                if line:
                    yield json.loads(line)


def read_one(path: Path) -> list[Record]:
    """Every complete record of one ledger; a torn last line (a kill mid-write) is skipped."""
    records: list[Record] = []
    for line in path.read_bytes().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def read_all(folder: Path) -> list[Record]:
    """Every complete record of every ledger."""
    return [r for path in sorted(folder.glob("*.jsonl")) for r in read_one(path)]
