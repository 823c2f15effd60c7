"""Redis-backed parts: the store, the shared breaker and the key schema."""

from kew_plug.backends.redis.breaker import RedisBreaker
from kew_plug.backends.redis.keys import QueueKeys
from kew_plug.backends.redis.store import RedisStore

__all__ = ["QueueKeys", "RedisBreaker", "RedisStore"]
