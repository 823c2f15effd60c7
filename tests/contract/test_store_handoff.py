"""The shipped store hand-off contract on every store of this project (factories in
tests/contract/conftest.py); stores without hand-offs skip it."""

from harness.contract.store_handoff import *  # noqa: F403
