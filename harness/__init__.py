"""The kew-plug harness: real OS processes against one store, checked by an independent
ledger. `run(...)` returns the report; `python -m harness` prints it."""

from harness.config import ConfigError, RunConfig
from harness.runner import Report, arun, run

__all__ = ["ConfigError", "Report", "RunConfig", "arun", "run"]
