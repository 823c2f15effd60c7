"""Redis-backed parts: the store, the shared breaker and the key schema."""

from backends.redis.breaker import RedisBreaker
from backends.redis.keys import QueueKeys
from backends.redis.store import RedisStore

__all__ = ["QueueKeys", "RedisBreaker", "RedisStore"]
