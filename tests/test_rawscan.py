"""The raw leftover judge: payload bytes found by marker wherever they sit, TTLs bounded by
the fate of the task a key names, queue structures allowed no TTL only while they hold no
finished task."""

from __future__ import annotations

from harness.rawscan import RawKey, RawScan, judge
from harness.tasks import marker

NS = "khtest"
PATTERN = b"\xa5Q7!z\x00\x93k"
DAY_MS = 86_400_000


def test_a_clean_namespace_passes() -> None:
    left = judge(
        RawScan(
            [
                RawKey(f"{NS}:{{q}}:t:{NS}-1", "hash", 500_000, b"st|completed|r|42"),
                RawKey(f"{NS}:{{q}}:t:{NS}-3", "hash", 1_700_000, b"st|dead"),
                RawKey(f"{NS}:{{q}}:seq", "string", -1, b"99"),
                RawKey(f"{NS}:{{q}}:dead", "zset", -1, f"{NS}-3".encode()),
            ],
            1,
        ),
        NS,
        PATTERN,
        {f"{NS}-1"},
        {f"{NS}-3"},
        600,
        1800,
    )
    assert (left.payload_ids, left.without_ttl, left.ttl_too_long) == (set(), [], [])


def test_any_chunk_of_fifteen_marker_bytes_is_found() -> None:
    region = b"cloudpickle..." + marker(PATTERN) + b"...tail"
    for start in range(14, 14 + 8 * 18):
        chunk = region[start : start + 15]
        assert PATTERN in chunk, start
    key = RawKey(f"{NS}:blob:7", "list", 1000, region[20:35])
    left = judge(RawScan([key], 1), NS, PATTERN, set(), set(), 600, 1800)
    assert left.payload_keys == [f"{NS}:blob:7"]


def test_records_outliving_their_bound_and_keys_without_ttl_fail() -> None:
    left = judge(
        RawScan(
            [
                RawKey(f"{NS}:{{q}}:t:{NS}-1", "hash", 30 * DAY_MS, b""),  # completed: > 600 s
                RawKey(f"{NS}:{{q}}:t:{NS}-3", "hash", 1_700_000, b""),  # dead: within 1800 s
                RawKey(f"{NS}:{{q}}:r:{NS}-2", "string", -1, b"42"),  # no TTL at all
                RawKey(f"{NS}:{{q}}:done", "set", -1, f"{NS}-1".encode()),  # keeps a finished id
            ],
            1,
        ),
        NS,
        PATTERN,
        {f"{NS}-1", f"{NS}-2"},
        {f"{NS}-3"},
        600,
        1800,
    )
    assert left.ttl_too_long == [f"{NS}:{{q}}:t:{NS}-1: 2592000 s > 600 s"]
    assert left.without_ttl == [f"{NS}:{{q}}:r:{NS}-2", f"{NS}:{{q}}:done"]
