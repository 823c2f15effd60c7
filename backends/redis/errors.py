"""Turns redis-py's connection failures into one-line `StoreUnavailable` errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import hiredis
from redis import exceptions as rex

from kew_plug.errors import StoreUnavailable


def describe_target(client: Any) -> str:
    """host:port/db (or the unix socket path) of a redis-py client, without its password;
    `cluster host:port,...` (the seed nodes) for a cluster client."""
    seeds = getattr(getattr(client, "nodes_manager", None), "startup_nodes", None)
    if seeds:
        return "cluster " + ",".join(sorted(seeds))
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if "path" in kw:
        return f"unix://{kw['path']}"
    return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


@contextlib.contextmanager
def translated(target: str) -> Iterator[None]:
    try:
        yield
    except StoreUnavailable:
        raise  # already says what happened (a replica WAIT that fell short)
    except rex.AuthenticationError as e:
        raise StoreUnavailable(f"Redis at {target} refused the credentials: {e}") from e
    except (rex.ClusterError, rex.TryAgainError, rex.SlotNotCoveredError) as e:
        raise StoreUnavailable(f"Redis Cluster at {target} cannot serve the slot: {e}") from e
    except rex.ResponseError as e:
        if str(e).startswith(("CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK ")):
            raise StoreUnavailable(f"Redis Cluster at {target} cannot serve the slot: {e}") from e
        if str(e).startswith(("LOADING", "MASTERDOWN", "NOREPLICAS", "READONLY")):
            raise StoreUnavailable(f"Redis at {target} cannot take writes now: {e}") from e
        if "NOAUTH" in str(e) or "WRONGPASS" in str(e) or "NOPERM" in str(e):
            raise StoreUnavailable(f"Redis at {target} refused the credentials: {e}") from e
        raise
    except (
        rex.ConnectionError,
        rex.TimeoutError,
        rex.RedisClusterException,
        hiredis.ProtocolError,
        OSError,
    ) as e:
        raise StoreUnavailable(f"cannot reach Redis at {target}: {e}") from e
