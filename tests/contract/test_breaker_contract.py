"""The shipped Breaker contract (harness.contract.breaker) on the local breaker and the Redis
breaker over fakeredis, real Redis and Redis Cluster (tests/contract/conftest.py)."""

from harness.contract.breaker import *  # noqa: F403
