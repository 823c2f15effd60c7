"""One definition of a queue for the app and the `kew-plug` command: a URL plus options, or
the environment, so neither has to write code that constructs a store. The `sync_` forms
give the same queue as a `SyncQueue`, for code without an event loop."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kew_plug.errors import InvalidArgument
from kew_plug.queue import Queue
from kew_plug.registry import make_store
from kew_plug.sync_queue import SyncQueue

ENV_URL = "KEW_PLUG_URL"
ENV_NAMESPACE = "KEW_PLUG_NAMESPACE"
ENV_RESULT_TTL = "KEW_PLUG_RESULT_TTL"
ENV_SERIALIZER = "KEW_PLUG_SERIALIZER"
#: Not a queue setting: the default `--lease` of `kew-plug worker` (see worker_lease()).
ENV_LEASE = "KEW_PLUG_LEASE"


def queue_from_url(
    url: str,
    *,
    name: str = "default",
    namespace: str | None = None,
    result_ttl: float | None = None,
    serializer: str = "cloudpickle",
    **queue_options: Any,
) -> Queue:
    """`Queue` on the store at `url` ("redis://…", "redis+cluster://…", "memory", …).
    `queue_options` are Queue's own (secret, retries, timeout, max_size, breaker, …)."""
    store_options: dict[str, Any] = {}
    if namespace is not None:
        store_options["namespace"] = namespace
    if result_ttl is not None:
        store_options["result_ttl"] = result_ttl
    store = make_store(url, **store_options)
    breaker = queue_options.pop("breaker", None)
    return Queue(store, serializer, breaker, name=name, **queue_options)


def queue_from_env(
    name: str = "default", environ: Mapping[str, str] | None = None, **queue_options: Any
) -> Queue:
    """`queue_from_url` with settings from KEW_PLUG_URL (required), KEW_PLUG_NAMESPACE,
    KEW_PLUG_RESULT_TTL and KEW_PLUG_SERIALIZER; KEW_PLUG_SECRET signs payloads as usual."""
    env = os.environ if environ is None else environ
    url = env.get(ENV_URL)
    if not url:
        raise InvalidArgument(f"{ENV_URL} is not set: give the store URL, e.g. redis://host/0")
    ttl = env.get(ENV_RESULT_TTL)
    return queue_from_url(
        url,
        name=name,
        namespace=env.get(ENV_NAMESPACE) or None,
        result_ttl=_seconds(ENV_RESULT_TTL, ttl) if ttl else None,
        serializer=env.get(ENV_SERIALIZER) or "cloudpickle",
        **queue_options,
    )


def sync_queue_from_url(url: str, **options: Any) -> SyncQueue:
    """`queue_from_url`, as a `SyncQueue`."""
    return SyncQueue._wrapping(queue_from_url(url, **options))


def sync_queue_from_env(
    name: str = "default", environ: Mapping[str, str] | None = None, **queue_options: Any
) -> SyncQueue:
    """`queue_from_env`, as a `SyncQueue`: a sync app reads the same settings as its workers,
    so both agree on the store, the namespace and the serializer."""
    return SyncQueue._wrapping(queue_from_env(name, environ, **queue_options))


def worker_lease(environ: Mapping[str, str] | None = None) -> float | None:
    """KEW_PLUG_LEASE in seconds, if set: the lease `kew-plug worker` uses by default."""
    text = (os.environ if environ is None else environ).get(ENV_LEASE)
    return _seconds(ENV_LEASE, text) if text else None


def _seconds(what: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgument(f"{what} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise InvalidArgument(f"{what} must be positive, got {text!r}")
    return value
