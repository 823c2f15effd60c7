"""The shipped Store contract (harness.contract.store) on memory, fakeredis, real Redis and
Redis Cluster: the factories are in tests/contract/conftest.py."""

from harness.contract.store import *  # noqa: F403
