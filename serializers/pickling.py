"""Serializers over pickle-compatible modules (pickle, cloudpickle, dill)."""

from __future__ import annotations

import importlib
import pickle
import reprlib
from typing import Any

from kew_plug.errors import PayloadError, SerializationError
from kew_plug.interfaces import Serializer
from kew_plug.serializers.framing import frame, unframe


class _Describe(reprlib.Repr):
    """Bounded repr for error messages: never builds the full repr of a huge object, and shows
    callables by qualified name (the useful part of a task payload)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = 40
        self.maxother = 40
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr1(self, x: Any, level: int) -> str:
        name = _callable_name(x)
        if name is not None:
            return name
        try:
            return super().repr1(x, level)
        except Exception:  # a broken __repr__ must not hide the real error
            return f"<{type(x).__name__} object>"


def _callable_name(x: Any) -> str | None:
    qualname = getattr(x, "__qualname__", None)
    if callable(x) and isinstance(qualname, str):
        return f"{getattr(x, '__module__', None) or '?'}.{qualname}"
    return None


_describe = _Describe()


def describe(obj: Any, limit: int = 80) -> str:
    """A short description of `obj` for `SerializationError`."""
    name = _callable_name(obj)
    if name is not None:
        # The tail ("<locals>.<lambda>") is what tells a user why pickle refused it.
        return name if len(name) <= limit else "..." + name[3 - limit :]
    text = _describe.repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PickleLikeSerializer(Serializer):
    """A `Serializer` over any module with pickle's `dumps(obj, protocol=)` / `loads(data)`.
    Subclasses set `name` and `module`; the module is imported when the first instance is made
    so that importing `serializers` stays cheap."""

    name: str
    module: str

    def __init__(self) -> None:
        mod = importlib.import_module(self.module)
        self._dump = mod.dumps
        self._load = mod.loads

    def dumps(self, obj: Any) -> bytes:
        try:
            body: bytes = self._dump(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise SerializationError(describe(obj), self.name, exc) from exc
        return frame(self.name, body)

    def loads(self, data: bytes) -> Any:
        body = unframe(data, self.name)
        try:
            return self._load(body)
        except Exception as exc:
            raise PayloadError(
                f"payload could not be read by {self.name!r}: {type(exc).__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PickleSerializer(PickleLikeSerializer):
    """Stdlib pickle: functions travel by reference, so lambdas and closures are refused."""

    name = "pickle"
    module = "pickle"


class CloudpickleSerializer(PickleLikeSerializer):
    """cloudpickle: lambdas, closures and interactively defined functions travel by value."""

    name = "cloudpickle"
    module = "cloudpickle"


class DillSerializer(PickleLikeSerializer):
    """dill: by-value functions, and a wider range of types than cloudpickle (e.g. locks)."""

    name = "dill"
    module = "dill"
