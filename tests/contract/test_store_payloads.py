"""The shipped store payloads contract on every store of this project (factories in
tests/contract/conftest.py)."""

from harness.contract.store_payloads import *  # noqa: F403
