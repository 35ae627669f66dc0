"""Which kept-open reader a re-read uses: two jobs of one partition read in turns each read
on from their own reader (no seek back and forth); a third seeks the least recently used;
both readers are closed with the partition (fake readers: the choice, not the client)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from itertools import count
from typing import Any, ClassVar

import pytest

from connector.adapters.reread import RequestReader
from connector.core.records import Kind, Record, RequestEvent
from connector.core.spans import SPAN_GAP
from connector.errors import BrokerUnavailable

TICK = count()


class FakeReader:
    """Reads a partition whose record at offset o is request `r<o>`; counts seeks."""

    opened: ClassVar[list[FakeReader]] = []

    def __init__(self, *_args: Any) -> None:
        self.next = -1
        self.seeks = 0
        self.last_used = 0.0
        self.closed = False
        self.fail = False
        FakeReader.opened.append(self)

    def continues(self, start: int) -> bool:
        return 0 <= self.next <= start <= self.next + SPAN_GAP

    def records(
        self, spans: Iterable[tuple[int, int]], keep: Container[int] | None = None
    ) -> Iterator[Record]:
        self.last_used = float(next(TICK))
        for start, stop in spans:
            if self.fail:
                raise BrokerUnavailable("down")
            if not self.continues(start):
                self.seeks += 1
            for o in range(start, stop):
                if keep is None or o in keep:
                    yield Record("t", 0, o, f"r{o}".encode(), f"r{o}".encode(), (), 0)
            self.next = stop

    def close(self) -> None:
        self.closed = True


def decode(value: bytes) -> RequestEvent:
    return RequestEvent(value.decode(), "m", Kind.GENERATE, "{}")


@pytest.fixture
def reader() -> Iterator[RequestReader]:
    FakeReader.opened = []
    clock = iter(range(10**6))
    r = RequestReader(
        "t", decode, "b", {}, clock=lambda: float(next(clock)), open_reader=FakeReader
    )
    yield r
    r.close()


def test_two_interleaved_jobs_read_in_turns_each_read_on_from_their_own_reader(
    reader: RequestReader,
) -> None:
    a, b = list(range(0, 2_000, 2)), list(range(1, 2_000, 2))
    for k in range(0, 1_000, 100):  # deliveries in turns, a chunk each per pass
        for job in (a, b):
            chunk = job[k : k + 100]
            got = reader.read(0, chunk)
            assert sorted(got) == chunk
            assert all(got[o].event.request_id == f"r{o}" for o in chunk)  # type: ignore[union-attr]
    assert len(FakeReader.opened) == 2
    assert [r.seeks for r in FakeReader.opened] == [1, 1]  # one seek each, for the whole jobs


def test_a_third_job_seeks_the_least_recently_used_reader(reader: RequestReader) -> None:
    reader.read(0, [0, 2, 4])  # job a: the first reader
    reader.read(0, [1, 3, 5])  # job b: cannot read on from a's: the spare
    first, spare = reader.readers[0], reader.spares[0]
    reader.read(0, [5_000])  # job c: neither reads on: the one used least recently
    assert first.seeks == 2
    assert spare.seeks == 1
    reader.read(0, [7])  # b reads on from the spare
    assert spare.seeks == 1
    assert len(FakeReader.opened) == 2  # never more than two per partition


def test_both_readers_close_with_the_partition_and_a_failed_one_is_not_reused(
    reader: RequestReader,
) -> None:
    reader.read(0, [0, 2])
    reader.read(0, [1, 3])
    first, spare = reader.readers[0], reader.spares[0]
    first.fail = True
    with pytest.raises(BrokerUnavailable):
        reader.read(0, [5])  # goes on from the first reader, which fails
    assert first.closed
    assert 0 not in reader.readers
    assert reader.spares[0] is spare
    assert sorted(reader.read(0, [8])) == [8]  # a new first reader
    assert len(FakeReader.opened) == 3
    reader.retain({1})
    assert spare.closed
    assert all(r.closed for r in FakeReader.opened)
    assert reader.readers == {}
    assert reader.spares == {}
