"""Turns every redis-py, hiredis and socket failure into one-line kew-plug errors:
`StoreUnavailable` when the server cannot serve now (unreachable, credentials, out of
memory, read-only, a cluster slot moving) and `StoreError` when it refused the call itself
(a script error, a key of the wrong type). Nothing raw reaches the caller."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import hiredis
from redis import exceptions as rex

from kew_plug.errors import KewError, StoreError, StoreUnavailable

# Server error prefixes (or phrases) and what they mean to a caller, first match wins.
_CLUSTER = ("CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK ")
_NO_WRITES = ("LOADING", "MASTERDOWN", "NOREPLICAS", "READONLY", "BUSY")
_CREDENTIALS = ("NOAUTH", "WRONGPASS", "NOPERM", "Protocol error: unauthenticated")


def describe_target(client: Any) -> str:
    """host:port/db (or the unix socket path) of a redis-py client, without its password;
    `cluster host:port,...` (the seed nodes) for a cluster client."""
    seeds = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if seeds:
        return "cluster " + ",".join(sorted(seeds))
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kw:
        return f"unix://{kw['path']}"
    # redis-py's own defaults, for a URL that names no host or port (redis://).
    return f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def _line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 300 else text[:297] + "..."


def refusal(target: str, e: BaseException) -> StoreError:
    """The kew-plug error for a server's error reply `e`."""
    text = _line(e)
    if text.startswith(_CLUSTER):
        return StoreUnavailable(f"Redis Cluster at {target} cannot serve the slot: {text}")
    if any(word in text for word in _CREDENTIALS) or isinstance(e, rex.AuthenticationError):
        return StoreUnavailable(f"Redis at {target} refused the credentials: {text}")
    # redis-py strips the prefix of the errors it has a class for, so both are checked.
    if text.startswith("OOM") or isinstance(e, rex.OutOfMemoryError):
        return StoreUnavailable(f"Redis at {target} is out of memory (maxmemory): {text}")
    if text.startswith(_NO_WRITES) or isinstance(e, rex.ReadOnlyError | rex.BusyLoadingError):
        return StoreUnavailable(f"Redis at {target} takes no writes now: {text}")
    if "DB index is out of range" in text or "invalid DB index" in text:
        return StoreUnavailable(f"Redis at {target} has no such database: {text}")
    return StoreError(f"Redis at {target} refused the call: {text}")


@contextlib.contextmanager
def translated(target: str) -> Iterator[None]:
    try:
        yield
    except KewError:
        raise  # already ours (a replica WAIT that fell short, a closed store)
    except (rex.ClusterError, rex.TryAgainError, rex.SlotNotCoveredError) as e:
        message = f"Redis Cluster at {target} cannot serve the slot: {_line(e)}"
        raise StoreUnavailable(message) from e
    except (rex.ResponseError, rex.AuthenticationError, hiredis.ReplyError) as e:
        raise refusal(target, e) from e
    except (
        rex.ConnectionError,
        rex.TimeoutError,
        rex.RedisClusterException,
        hiredis.ProtocolError,
        OSError,
    ) as e:
        if any(word in str(e) for word in _CREDENTIALS):
            raise StoreUnavailable(f"Redis at {target} refused the credentials: {_line(e)}") from e
        raise StoreUnavailable(f"cannot reach Redis at {target}: {_line(e)}") from e
    except rex.RedisError as e:
        raise StoreError(f"Redis at {target} failed the call: {_line(e)}") from e
