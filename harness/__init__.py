"""The kew-plug harness: real OS processes against one store, checked by an independent
ledger. `run(...)` returns the report; `python -m harness` prints it.

The runner is imported when first named, so that without the `harness` extra
`python -m harness` can say which extra to install instead of failing on an import."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from harness.config import ConfigError, RunConfig

if TYPE_CHECKING:
    from harness.runner import Report, arun, run

_RUNNER = ("Report", "arun", "run")


def __getattr__(name: str) -> Any:
    if name not in _RUNNER:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module("harness.runner"), name)
    globals()[name] = value
    return value


__all__ = ["ConfigError", "Report", "RunConfig", "arun", "run"]
