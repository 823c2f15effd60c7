"""One registry from names to parts, used by Queue and the harness alike. Imports a backend
only when asked, so `kew_plug` never imports `backends` or `serializers` at module level."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from kew_plug.errors import UnknownBackend
from kew_plug.extras import missing_extra
from kew_plug.interfaces import Breaker, Serializer, Store

T = TypeVar("T")

STORES: dict[str, str] = {
    "memory": "kew_plug.backends.memory:MemoryStore",
    "fakeredis": "kew_plug.backends.fake:FakeRedisStore",
}
URL_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://")
# How each store URL form is spelled in error messages, so a typo shows every choice.
URL_FORMS = (
    "redis://host:port/db",
    "rediss://host:port/db",
    "unix:///path/to/socket",
    "redis+cluster://host:port[,host:port]",
)
SERIALIZERS: dict[str, str] = {
    "cloudpickle": "kew_plug.serializers.pickling:CloudpickleSerializer",
    "dill": "kew_plug.serializers.pickling:DillSerializer",
    "pickle": "kew_plug.serializers.pickling:PickleSerializer",
}
BREAKERS: dict[str, str] = {
    "local": "kew_plug.backends.breakers:LocalBreaker",
    "redis": "(shares the Redis store's connection)",
}


def load_object(path: str, kind: str, known: list[str]) -> Any:
    """Import `package.module:attribute`; errors name the path and what went wrong."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise UnknownBackend(kind, path, known, "expected a name or 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        hint = missing_extra(e) or f"cannot import {module_name!r}: {e}"
        raise UnknownBackend(kind, path, known, hint) from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UnknownBackend(kind, path, known, f"{module_name!r} has no {attr!r}") from None


def _build(
    spec: str, table: dict[str, str], kind: str, base: type[T], names: list[str] | None = None
) -> T:
    known = [*(table if names is None else names), "package.module:factory"]
    target = table.get(spec, spec)
    obj = load_object(target, kind, known)
    try:
        made = obj() if callable(obj) and not isinstance(obj, base) else obj
    except ImportError as e:  # a part that imports its library when first made (dill)
        hint = missing_extra(e)
        if hint is None:
            raise
        raise UnknownBackend(kind, spec, known, hint) from e
    if not isinstance(made, base):
        raise UnknownBackend(kind, spec, known, f"it produced {type(made).__name__}, not a {kind}")
    return made


def make_store(spec: Store | str, **options: Any) -> Store:
    """A store from an object, a URL or a name. `options` (namespace, result_ttl, dead_ttl)
    go to a store made from a URL or a built-in name."""
    if isinstance(spec, Store):
        return spec
    if spec.startswith(URL_SCHEMES) or spec == "redis":
        from_url: Callable[..., Store] = load_object(
            "kew_plug.backends.redis:RedisStore", "store", list(STORES)
        ).from_url
        return from_url("redis://127.0.0.1:6379/0" if spec == "redis" else spec, **options)
    if ":" not in spec and spec not in STORES:
        raise UnknownBackend("store", spec, [*STORES, *URL_FORMS, "module:factory"])
    module, _, attr = spec.partition(":")
    if "/" in module or attr.startswith("/"):
        # 'rediss//host' or 'redis:/host': a mistyped URL, not a module path.
        hint = "it looks like a URL with a mistyped scheme (scheme://host)"
        raise UnknownBackend("store", spec, [*STORES, *URL_FORMS, "module:factory"], hint)
    if options and spec in STORES:
        made: Store = load_object(STORES[spec], "store", list(STORES))(**options)
        return made
    return _build(spec, STORES, "store", Store, [*STORES, *URL_FORMS])  # type: ignore[type-abstract]


def make_serializer(spec: Serializer | str) -> Serializer:
    if isinstance(spec, Serializer):
        return spec
    if ":" not in spec and spec not in SERIALIZERS:
        raise UnknownBackend("serializer", spec, [*SERIALIZERS, "module:factory"])
    return _build(spec, SERIALIZERS, "serializer", Serializer)  # type: ignore[type-abstract]


def make_breaker(
    spec: Breaker | str | None, store: Store, queue: str, **options: Any
) -> Breaker | None:
    """`options` (failure_threshold, reset_timeout, half_open_max_calls) go to a breaker
    made by name."""
    if spec is None or isinstance(spec, Breaker):
        return spec
    if spec == "none":
        return None
    if spec == "redis":
        shared = store.shared_breaker(queue, **options)
        if shared is None:
            raise UnknownBackend(
                "breaker", spec, BREAKERS, f"{type(store).__name__} cannot share breaker state"
            )
        return shared
    if ":" not in spec and spec not in BREAKERS:
        raise UnknownBackend("breaker", spec, [*BREAKERS, "none", "module:factory"])
    if spec == "local":
        local = load_object(BREAKERS["local"], "breaker", list(BREAKERS))
        made_local: Breaker = local(**options)
        return made_local
    known = [*BREAKERS, "none", "package.module:factory"]
    factory = load_object(spec, "breaker", known)
    if isinstance(factory, Breaker) or not callable(factory):
        made = factory
    else:
        # A factory takes whichever of the store (to share state in it), the queue's name
        # and the breaker options its signature names; `**kwargs` takes the options.
        made = factory(**_accepted(factory, {"store": store, "queue": queue}, options))
    if not isinstance(made, Breaker):
        raise UnknownBackend("breaker", spec, known, f"it produced {type(made).__name__}")
    return made


def _accepted(
    fn: Callable[..., Any], parts: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in {**parts, **options}.items() if k in params}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs.update(options)
    return kwargs
