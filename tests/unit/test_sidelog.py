"""The side log: what results need of each request taken in, read back exactly as the
request topic would give it, or not at all (then delivery re-reads)."""

from __future__ import annotations

import tempfile
from typing import IO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.records import Kind, RequestEvent
from connector.stages import sidelog as sidelog_mod
from connector.stages.sidelog import SideLog


def open_file() -> IO[bytes]:
    return tempfile.TemporaryFile()


def event(i: int, **fields: object) -> RequestEvent:
    base: dict[str, object] = {
        "request_id": f"r-{i}",
        "model": "gemini-2.5-flash",
        "kind": Kind.GENERATE,
        "body": '{"contents": []}',
        "metadata": {"tenant": "т-" + str(i)},
        "created_ms": 1_000 + i,
        "deadline_ms": None if i % 2 else 9_000 + i,
    }
    base.update(fields)
    return RequestEvent(**base)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_results_use() -> None:
    log = SideLog(open_file)
    keys = {0: b"k0", 1: None, 2: bytes(range(256))}  # any bytes, not only UTF-8
    for o, k in keys.items():
        log.append(3, o, k, event(o))
    got = log.read(3, [0, 1, 2])
    assert got is not None
    for o, k in keys.items():
        orig = got[o]
        want = event(o)
        assert (orig.partition, orig.offset, orig.kafka_key) == (3, o, k)
        assert orig.event is not None
        for f in ("request_id", "model", "kind", "metadata", "created_ms", "deadline_ms"):
            assert getattr(orig.event, f) == getattr(want, f), f
        assert orig.event.body == ""  # results never need it
    assert log.hits == 1


def test_an_offset_not_taken_in_is_a_miss_for_the_whole_read() -> None:
    log = SideLog(open_file)
    log.append(0, 10, b"a", event(10))
    log.append(0, 12, b"c", event(12))  # 11 was dead-lettered
    assert log.read(0, [10, 12]) is not None
    assert log.read(0, [10, 11, 12]) is None
    assert log.read(0, [9]) is None
    assert log.read(1, [10]) is None
    assert log.misses == 3


def test_a_record_read_again_after_a_seek_is_not_appended_twice() -> None:
    log = SideLog(open_file)
    log.append(0, 5, b"a", event(5))
    log.append(0, 5, b"a", event(5))
    log.append(0, 6, b"b", event(6))
    got = log.read(0, [5, 6])
    assert got is not None
    assert sorted(got) == [5, 6]


def test_segments_rotate_and_whole_old_ones_are_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sidelog_mod, "SEGMENT_BYTES", 500)
    log = SideLog(open_file)
    for o in range(40):
        log.append(0, o, b"k", event(o))
    assert log.segments(0) > 2
    got = log.read(0, list(range(40)))  # a read across segments
    assert got is not None
    assert sorted(got) == list(range(40))
    log.trim(0, [], 30)
    assert log.read(0, [35, 36]) is not None
    assert log.read(0, [0]) is None  # trimmed: re-read instead
    log.trim(0, [], 10_000)
    assert log.segments(0) == 1  # the segment appended to stays


def test_a_long_lived_job_keeps_its_own_segments_not_every_later_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sidelog_mod, "SEGMENT_BYTES", 500)
    log = SideLog(open_file)
    for o in range(60):
        log.append(0, o, b"k", event(o))
    n = log.segments(0)
    log.trim(0, [(2, 3)], committed=60)  # one old job still waits
    assert log.read(0, [2, 3]) is not None
    assert log.read(0, [30]) is None  # between: gone
    assert log.segments(0) == 2 < n  # its segment and the one appended to


def test_a_long_gap_starts_a_new_segment_instead_of_holding_memory() -> None:
    log = SideLog(open_file)
    log.append(0, 0, b"a", event(0))
    log.append(0, 1_000_000, b"b", event(1))
    assert log.segments(0) == 2
    assert log.read(0, [0, 1_000_000]) is not None


def test_a_file_error_turns_the_partition_off_until_it_is_let_go() -> None:
    def broken() -> IO[bytes]:
        raise OSError(28, "No space left on device")

    log = SideLog(broken)
    log.append(0, 0, b"a", event(0))
    assert log.read(0, [0]) is None
    log.drop(0)  # let go; taken over again, it tries anew
    log.append(0, 0, b"a", event(0))
    assert log.read(0, [0]) is None


def test_drop_forgets_the_partition() -> None:
    log = SideLog(open_file)
    log.append(0, 0, b"a", event(0))
    log.drop(0)
    assert log.read(0, [0]) is None
    assert log.segments(0) == 0


@given(
    st.lists(st.integers(0, 3), min_size=1, max_size=60),
    st.data(),
)
def test_any_subset_of_what_was_taken_in_reads_back(gaps: list[int], data: st.DataObject) -> None:
    log = SideLog(open_file)
    offsets, o = [], 0
    for g in gaps:
        o += g + 1
        offsets.append(o)
        log.append(1, o, str(o).encode(), event(o))
    wanted = sorted(data.draw(st.sets(st.sampled_from(offsets), min_size=1)))
    got = log.read(1, wanted)
    assert got is not None
    assert sorted(got) == wanted
    assert all(got[w].kafka_key == str(w).encode() for w in wanted)
    log.close()
