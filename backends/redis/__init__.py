"""Redis-backed parts: the store, the shared breaker and the key schema."""

from backends.redis.keys import QueueKeys
from backends.redis.store import RedisStore

__all__ = ["QueueKeys", "RedisStore"]
