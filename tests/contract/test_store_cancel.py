"""The shipped store cancel contract on every store of this project (factories in
tests/contract/conftest.py)."""

from harness.contract.store_cancel import *  # noqa: F403
