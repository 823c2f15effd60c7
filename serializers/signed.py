"""HMAC-SHA256 signing around any serializer, so workers never unpickle bytes that someone
with write access to the store (but without the key) put there."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

from kew_plug.errors import InvalidArgument, PayloadError, SerializationError
from kew_plug.interfaces import Serializer
from kew_plug.serializers.framing import MAC_SIZE, SIGNED_HEADER_SIZE, SIGNED_PREFIX, writer_name

MIN_KEY_BYTES = 16


def _key_bytes(index: int, key: object) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes | bytearray):
        kind = type(key).__name__
        raise InvalidArgument(f"signing key #{index} must be bytes or str, not {kind}")
    if len(key) < MIN_KEY_BYTES:
        raise InvalidArgument(
            f"signing key #{index} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
            f"(use e.g. secrets.token_bytes(32))"
        )
    return bytes(key)


class Signed(Serializer):
    """Wraps `inner`: output is b"KS" + version + HMAC-SHA256(inner bytes) + inner bytes.
    `keys[0]` signs; every key verifies, so a key can be rotated by putting the new one first
    and dropping the old one once no payload signed with it remains."""

    def __init__(self, inner: Serializer, keys: Sequence[bytes | str]) -> None:
        if not isinstance(inner, Serializer):
            raise InvalidArgument(f"inner must be a Serializer, not {type(inner).__name__}")
        # A lone key would otherwise be iterated character by character.
        if isinstance(keys, str | bytes | bytearray):
            raise InvalidArgument("keys must be a sequence of keys; wrap a single key: [key]")
        raw = [_key_bytes(i, k) for i, k in enumerate(keys)]
        if not raw:
            raise InvalidArgument("Signed needs at least one key; got an empty key list")
        self.inner = inner
        self.name = f"signed:{inner.name}"
        # Keyed once here; copying a keyed HMAC is cheaper than re-keying per payload.
        self._macs = [hmac.new(k, digestmod=hashlib.sha256) for k in raw]

    def dumps(self, obj: Any) -> bytes:
        try:
            body = self.inner.dumps(obj)
        except SerializationError as exc:
            raise SerializationError(exc.what, self.name, exc.__cause__ or str(exc)) from exc
        mac = self._macs[0].copy()
        mac.update(body)
        return b"".join((SIGNED_PREFIX, mac.digest(), body))

    def loads(self, data: bytes) -> Any:
        if isinstance(data, bytearray | memoryview):
            data = bytes(data)
        if not isinstance(data, bytes) or not data.startswith(SIGNED_PREFIX):
            raise PayloadError(f"unsigned payload refused: {self._unsigned_reason(data)}")
        body = data[SIGNED_HEADER_SIZE:]
        writer = writer_name(body)
        # Only a header peek (nothing is unpickled): a clearer error than "no key matches".
        if writer is not None and writer != self.inner.name:
            raise PayloadError(
                f"payload was written by serializer 'signed:{writer}'; this side uses {self.name!r}"
            )
        if not self._verified(data[len(SIGNED_PREFIX) : SIGNED_HEADER_SIZE], body):
            raise PayloadError(
                "payload signature matches no configured key: tampered, or signed with another key"
            )
        return self.inner.loads(body)

    def _verified(self, tag: bytes, body: bytes) -> bool:
        if len(tag) != MAC_SIZE:
            return False
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(body)
            if hmac.compare_digest(mac.digest(), tag):
                return True
        return False

    def _unsigned_reason(self, data: object) -> str:
        if not isinstance(data, bytes):
            return f"expected bytes, got {type(data).__name__}"
        if len(data) > 2 and data.startswith(SIGNED_PREFIX[:2]):
            return f"signed payload format version {data[2]} is not supported"
        writer = writer_name(data)
        if writer is not None:
            return (
                f"written by serializer {writer!r}; this side uses {self.name!r} and accepts "
                f"only payloads signed with a configured key"
            )
        return "not a kew-plug payload (corrupt or foreign bytes)"

    def __repr__(self) -> str:
        # Never show key material.
        return f"Signed({self.inner!r}, keys=<{len(self._macs)} key(s)>)"
