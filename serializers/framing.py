"""Payload framing: b"KP", format version, name length, ascii serializer name, body.

The header lets a reader refuse bytes written by another serializer (or by nothing of ours)
with a clear message before any unpickling is attempted."""

from __future__ import annotations

from functools import cache

from kew_plug.errors import InvalidArgument, PayloadError

MAGIC = b"KP"
VERSION = 1

# Layout of `Signed` output. Kept here so `writer_name` can see through a signed header and
# name the writer in mismatch messages without verifying or unpickling anything.
SIGNED_MAGIC = b"KS"
SIGNED_VERSION = 1
MAC_SIZE = 32
SIGNED_PREFIX = SIGNED_MAGIC + bytes((SIGNED_VERSION,))
SIGNED_HEADER_SIZE = len(SIGNED_PREFIX) + MAC_SIZE

_PREFIX = MAGIC + bytes((VERSION,))
_MIN_SIZE = len(_PREFIX) + 2  # a name is at least one byte


@cache
def _header(name: str) -> bytes:
    # Cached: every dumps/loads on the hot path needs the same few headers.
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"serializer name must be a non-empty str, got {name!r}")
    try:
        raw = name.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidArgument(f"serializer name must be ascii, got {name!r}") from None
    if len(raw) > 255:
        raise InvalidArgument(f"serializer name is {len(raw)} bytes; the limit is 255")
    return _PREFIX + bytes((len(raw),)) + raw


def frame(name: str, body: bytes) -> bytes:
    """Prefix `body` with the kew-plug header naming serializer `name`."""
    return _header(name) + body


def unframe(data: bytes, expected: str) -> bytes:
    """The body of a payload framed by `expected`; `PayloadError` for anything else."""
    header = _header(expected)
    if isinstance(data, bytes) and data.startswith(header):
        return data[len(header) :]
    if isinstance(data, bytearray | memoryview):
        return unframe(bytes(data), expected)
    raise PayloadError(_diagnose(data, expected))


def writer_name(data: bytes | bytearray) -> str | None:
    """The serializer name a payload's header claims ("signed:..." through `Signed` layers),
    or None when the bytes carry no readable header. Nothing is verified: for messages only."""
    if not isinstance(data, bytes | bytearray):
        return None
    layers = 0
    # A loop, not recursion: hostile input may stack thousands of signed prefixes.
    while data.startswith(SIGNED_PREFIX):
        layers += 1
        data = data[SIGNED_HEADER_SIZE:]
    if len(data) < _MIN_SIZE or not data.startswith(_PREFIX):
        return None
    size = data[3]
    raw = data[4 : 4 + size]
    if size == 0 or len(raw) != size:
        return None
    return "signed:" * layers + raw.decode("ascii", "replace")


def _diagnose(data: object, expected: str) -> str:
    if not isinstance(data, bytes | bytearray):
        return f"not a kew-plug payload: expected bytes, got {type(data).__name__}"
    if data.startswith(MAGIC) and len(data) > 2 and data[2] != VERSION:
        return (
            f"payload format version {data[2]} is not supported; this side reads version "
            f"{VERSION} (are both sides running the same kew-plug?)"
        )
    writer = writer_name(data)
    if writer is None:
        return (
            f"not a kew-plug payload (corrupt or foreign bytes): {len(data)} bytes "
            f"starting {bytes(data[:8])!r}"
        )
    return f"payload was written by serializer {writer!r}; this side uses {expected!r}"
