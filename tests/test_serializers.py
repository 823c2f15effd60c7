"""Serializer-specific behaviour: what pickle refuses, what by-value serializers carry, and
what Signed refuses (without ever unpickling it). The shared contract is in tests/contract."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from kew_plug.errors import InvalidArgument, PayloadError, SerializationError
from kew_plug.interfaces import Serializer
from kew_plug.serializers import (
    CloudpickleSerializer,
    DillSerializer,
    PickleSerializer,
    Signed,
    frame,
    unframe,
)

OLD_KEY = b"old-key-0123456789abcdef"
NEW_KEY = b"new-key-0123456789abcdef"


def make_adder(n: int) -> Any:
    def add(x: int) -> int:
        return x + n

    return add


# -- framing ---------------------------------------------------------------------------------


def test_frame_layout_and_round_trip() -> None:
    data = frame("dill", b"body")
    assert data == b"KP\x01\x04dillbody"
    assert unframe(data, "dill") == b"body"
    assert unframe(frame("dill", b""), "dill") == b""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame("dill", b"x"), "written by serializer 'dill'; this side uses 'cloudpickle'"),
        (b"KP\x02\x0bcloudpicklex", "format version 2 is not supported"),
        (b"\x80\x05K\x01.", "not a kew-plug payload (corrupt or foreign bytes)"),
        (b"KP", "not a kew-plug payload (corrupt or foreign bytes)"),
        (b"KP\x01\x20cloud", "not a kew-plug payload (corrupt or foreign bytes)"),
        ("KP", "expected bytes, got str"),
    ],
    ids=["other-name", "version", "raw-pickle", "short", "name-overrun", "str"],
)
def test_unframe_messages(data: Any, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        unframe(data, "cloudpickle")
    assert message in str(info.value)


def test_unframe_names_signed_writer() -> None:
    data = Signed(DillSerializer(), [OLD_KEY]).dumps(1)
    with pytest.raises(PayloadError, match="'signed:dill'; this side uses 'dill'"):
        unframe(data, "dill")


@pytest.mark.parametrize("name", ["", "naïve", "x" * 256])
def test_frame_rejects_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgument):
        frame(name, b"")


# -- pickle and the by-value serializers -----------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "what"),
    [(lambda x: x, "<lambda>"), (make_adder(1), "make_adder.<locals>.add")],
    ids=["lambda", "closure"],
)
def test_pickle_refuses_lambda_and_closure(obj: Any, what: str) -> None:
    with pytest.raises(SerializationError) as info:
        PickleSerializer().dumps((obj, (1,), {}))
    assert info.value.serializer == "pickle"
    assert "'pickle'" in str(info.value)
    assert what in info.value.what


@pytest.mark.parametrize(
    "ser", [PickleSerializer(), CloudpickleSerializer(), DillSerializer()], ids=repr
)
def test_uses_highest_pickle_protocol(ser: Serializer) -> None:
    body = unframe(ser.dumps([1]), ser.name)
    assert body[:2] == bytes((pickle.PROTO[0], pickle.HIGHEST_PROTOCOL))


def test_pickle_round_trips_module_function_by_reference() -> None:
    ser = PickleSerializer()
    assert ser.loads(ser.dumps(make_adder)) is make_adder


@pytest.mark.parametrize("ser", [CloudpickleSerializer(), DillSerializer()], ids=repr)
def test_by_value_serializers_round_trip_runtime_closures(ser: Serializer) -> None:
    base = 40
    seen: list[int] = []

    def job(x: int) -> int:
        seen.append(x)
        return base + x + len(seen)

    add_five = make_adder(5)
    fn, args, kwargs = ser.loads(ser.dumps((job, (1,), {})))
    assert fn(*args, **kwargs) == 42
    # Captured state was copied, not shared with this process's objects.
    assert seen == []
    assert ser.loads(ser.dumps(add_five))(10) == 15
    assert ser.loads(ser.dumps(lambda y: y * base))(2) == 80


def test_serialization_error_describes_functions_by_qualname() -> None:
    with pytest.raises(SerializationError) as info:
        PickleSerializer().dumps(make_adder(2))
    assert info.value.what.endswith("make_adder.<locals>.add")
    assert "0x" not in info.value.what


def test_serialization_error_truncates_big_objects() -> None:
    big = ["x" * 1000] * 1000 + [(i for i in range(1))]
    with pytest.raises(SerializationError) as info:
        CloudpickleSerializer().dumps(big)
    assert len(info.value.what) <= 80


def test_unreadable_body_names_serializer_and_cause() -> None:
    with pytest.raises(PayloadError) as info:
        PickleSerializer().loads(frame("pickle", b"\x80\x05cno_such_module\nf\n."))
    assert "could not be read by 'pickle'" in str(info.value)
    assert "no_such_module" in str(info.value)


# -- Signed ----------------------------------------------------------------------------------


class SpySerializer(Serializer):
    """Delegates to pickle and records every loads call."""

    name = "pickle"

    def __init__(self) -> None:
        self.real = PickleSerializer()
        self.loads_calls = 0

    def dumps(self, obj: Any) -> bytes:
        return self.real.dumps(obj)

    def loads(self, data: bytes) -> Any:
        self.loads_calls += 1
        return self.real.loads(data)


def test_signed_name_and_round_trip() -> None:
    spy = SpySerializer()
    signed = Signed(spy, [NEW_KEY])
    assert signed.name == "signed:pickle"
    data = signed.dumps({"a": 1})
    assert data.startswith(b"KS\x01") and data[35:] == spy.dumps({"a": 1})
    assert signed.loads(data) == {"a": 1}
    assert spy.loads_calls == 1


@pytest.mark.parametrize(
    "data",
    [PickleSerializer().dumps(1), pickle.dumps(1), b"", b"garbage"],
    ids=["framed", "raw-pickle", "empty", "garbage"],
)
def test_signed_refuses_unsigned_without_calling_inner(data: bytes) -> None:
    spy = SpySerializer()
    with pytest.raises(PayloadError, match="unsigned payload refused"):
        Signed(spy, [NEW_KEY]).loads(data)
    assert spy.loads_calls == 0


def test_signed_refuses_tampering_without_calling_inner() -> None:
    spy = SpySerializer()
    signed = Signed(spy, [NEW_KEY])
    data = signed.dumps(["payload", 123])
    mac_byte = bytearray(data)
    mac_byte[3] ^= 0x01
    body_byte = bytearray(data)
    body_byte[-2] ^= 0x01
    for bad in (bytes(mac_byte), bytes(body_byte), data + b"\x00", data[:-1], data[:35]):
        with pytest.raises(PayloadError, match="matches no configured key"):
            signed.loads(bad)
    assert spy.loads_calls == 0


def test_signed_key_rotation() -> None:
    inner = PickleSerializer()
    old = Signed(inner, [OLD_KEY])
    rotated = Signed(inner, [NEW_KEY, OLD_KEY])
    retired = Signed(inner, [NEW_KEY])
    from_old = old.dumps("queued before rotation")
    assert rotated.loads(from_old) == "queued before rotation"
    # The first key signs: new payloads no longer need the old key.
    assert retired.loads(rotated.dumps("after")) == "after"
    with pytest.raises(PayloadError, match="matches no configured key"):
        retired.loads(from_old)
    with pytest.raises(PayloadError, match="matches no configured key"):
        old.loads(rotated.dumps("after"))


def test_signed_str_keys_are_utf8() -> None:
    text_key = "clé-de-signature-assez-longue"
    data = Signed(PickleSerializer(), [text_key.encode("utf-8")]).dumps(7)
    assert Signed(PickleSerializer(), [text_key]).loads(data) == 7


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "at least one key"),
        ([b"short"], "key #0 is 5 bytes; at least 16"),
        ([NEW_KEY, "tiny"], "key #1 is 4 bytes"),
        ([NEW_KEY, 12345], "key #1 must be bytes or str"),
        (NEW_KEY, "wrap a single key"),
        ("a-single-string-key-not-a-list", "wrap a single key"),
    ],
    ids=["empty", "short", "short-second", "not-bytes", "bare-bytes", "bare-str"],
)
def test_signed_rejects_bad_keys(keys: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Signed(PickleSerializer(), keys)


def test_signed_repr_hides_keys() -> None:
    text = repr(Signed(PickleSerializer(), [NEW_KEY, OLD_KEY]))
    assert NEW_KEY.decode() not in text and "2 key" in text


def test_signed_dumps_error_names_signed_serializer() -> None:
    with pytest.raises(SerializationError) as info:
        Signed(PickleSerializer(), [NEW_KEY]).dumps(lambda: None)
    assert info.value.serializer == "signed:pickle"
    assert "<lambda>" in info.value.what


def test_signed_can_wrap_signed() -> None:
    outer = Signed(Signed(DillSerializer(), [OLD_KEY]), [NEW_KEY])
    assert outer.name == "signed:signed:dill"
    assert outer.loads(outer.dumps({"x": b"y"})) == {"x": b"y"}


EXPLOITED: list[str] = []


def record_exploit(tag: str) -> str:
    EXPLOITED.append(tag)
    return tag


class Exploit:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (record_exploit, ("code ran during loads",))


def test_malicious_pickle_is_not_run_by_signed() -> None:
    EXPLOITED.clear()
    malicious = frame("pickle", pickle.dumps(Exploit()))
    signed = Signed(PickleSerializer(), [NEW_KEY])
    forged = b"KS\x01" + b"\x00" * 32 + malicious
    wrong_key = Signed(PickleSerializer(), [OLD_KEY]).dumps(Exploit())
    for attempt in (malicious, forged, wrong_key):
        with pytest.raises(PayloadError):
            signed.loads(attempt)
    assert EXPLOITED == []
    # The payload is live: unsigned pickle does run it, which is why Signed exists.
    PickleSerializer().loads(malicious)
    assert EXPLOITED == ["code ran during loads"]
