"""The ledger writer: an entry written in three parts, its offsets array encoded once per
`Offsets`, is byte for byte what one fastavro call writes, cursor after cursor."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core import ledger_writer
from connector.core.codec import Codec
from connector.core.offsets import Offsets
from connector.core.records import BatchKey, DeliveryCursor, EntryState, Kind, LedgerEntry

CODEC = Codec()


def reference(e: LedgerEntry) -> bytes:
    """The entry through fastavro in one call, as `Codec.encode_ledger` wrote it before."""
    w = CODEC._ledger
    buf = BytesIO()
    buf.write(w.header)
    record: dict[str, Any] = {
        "job_id": e.job_id,
        "partition": e.key.partition,
        "model": e.key.model,
        "kind": e.key.kind,
        "priority": e.key.priority,
        "group": e.key.group,
        "offsets": [{"start": s, "end": t} for s, t in e.offsets.ranges()],
        "attempt": e.attempt,
        "display_name": e.display_name,
        "state": e.state,
        "use_file": e.use_file,
        "est_tokens": e.est_tokens,
        "created_ms": e.created_ms,
        "updated_ms": e.updated_ms,
        "provider_job": e.provider_job,
        "input_file": e.input_file,
        "request_topic": e.request_topic,
        "delivered": None
        if e.delivered is None
        else {
            "items": e.delivered.items,
            "scanned": e.delivered.scanned,
            "last_key": e.delivered.last_key,
        },
    }
    schemaless_writer(buf, w.schema, record)
    return buf.getvalue()


def entry(offsets: Offsets, **over: Any) -> LedgerEntry:
    e = LedgerEntry(
        "p0-1",
        BatchKey(0, "gemini-2.5-flash", Kind.GENERATE, 0, "g"),
        offsets,
        0,
        "g:p0-1",
        EntryState.SUBMITTED,
        True,
        10,
        1_700_000_000_000,
        1_700_000_000_001,
        "batches/x",
        None,
        "requests",
    )
    return replace(e, **over)


texts = st.text(max_size=12)


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.integers(0, 10**12), max_size=200),
    texts,
    st.sampled_from(list(EntryState)),
    st.sampled_from(list(Kind)),
    st.one_of(st.none(), texts),
    st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), texts), max_size=4),
)
def test_written_in_parts_equals_one_fastavro_call(
    offsets: set[int],
    job_provider: str,
    state: EntryState,
    kind: Kind,
    input_file: str | None,
    cursors: list[tuple[int, int, str]],
) -> None:
    offs = Offsets(sorted(offsets))
    e = entry(
        offs,
        state=state,
        key=BatchKey(3, "m", kind, -2, job_provider),
        input_file=input_file,
        provider_job=job_provider or None,
    )
    assert CODEC.encode_ledger(e) == reference(e)
    for items, scanned, last in cursors:  # a delivery: the same offsets, cursor after cursor
        e = replace(e, delivered=DeliveryCursor(items, scanned, last), updated_ms=e.updated_ms + 1)
        data = CODEC.encode_ledger(e)
        assert data == reference(e)
        assert CODEC.decode_ledger(data) == e


def test_an_interleaved_jobs_cursor_writes_do_not_encode_its_offsets_again(
    monkeypatch: Any,
) -> None:
    """50,000 runs (a job of every other offset): the first write walks them, the cursor
    writes after it do not (a chunk's write no longer grows with the job)."""
    walked: list[int] = []
    ranges = Offsets.ranges

    def counting(self: Offsets) -> Any:
        walked.append(self.run_count)
        return ranges(self)

    codec = Codec()
    e = entry(Offsets(range(0, 100_000, 2)))
    assert codec.encode_ledger(e) == reference(e)
    moves = [replace(e, delivered=DeliveryCursor(0, 500 * k, str(1000 * k - 1))) for k in (1, 2)]
    expected = [reference(m) for m in moves]
    other = replace(e, offsets=Offsets(range(1, 100_000, 2)))  # another job
    monkeypatch.setattr(Offsets, "ranges", counting)
    assert [codec.encode_ledger(m) for m in moves] == expected
    assert walked == []
    codec.encode_ledger(other)  # its own offsets: encoded once
    codec.encode_ledger(other)
    assert walked == [50_000]


def test_the_cache_is_bounded(monkeypatch: Any) -> None:
    monkeypatch.setattr(ledger_writer, "CACHE_ENTRIES", 3)
    codec = Codec()
    w = codec._ledger_writer
    jobs = [entry(Offsets(range(k, k + 40, 2))) for k in range(10)]
    for e in jobs:
        assert codec.encode_ledger(e) == reference(e)
    assert len(w._cache) == 3
    assert w._cached_bytes == sum(len(b) for _, b in w._cache.values())
    for e in jobs:  # evicted ones are encoded again, the same
        assert codec.encode_ledger(e) == reference(e)
    monkeypatch.setattr(ledger_writer, "CACHE_BYTES", 10)
    big = entry(Offsets(range(0, 400, 2)))
    assert codec.encode_ledger(big) == reference(big)
    assert w._cached_bytes <= 10
