"""The delivery cursor (ledger v3): a delivery cut off after any chunk and resumed from the
cursor its ledger entry recorded answers every request exactly once, whatever the output
holds (repeated, foreign and malformed keys, missing lines), even when the output changed
under the cursor: results go out in offset order, so the cursor is a prefix of the job's
offsets and what was answered never depends on the output."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.codec import Codec
from connector.core.jsonl import read_output_items
from connector.core.records import DeliveryCursor, OutputItem
from connector.stages.delivery import Delivery
from tests.unit.test_big_jobs import _entry, _line, _read

OFFSETS = range(20, 40)


def _items(keys: list[str]) -> Callable[[], Iterator[tuple[OutputItem, int]]]:
    data = b"".join(_line(k, "y" * 50) for k in keys)
    return lambda: read_output_items(io.BytesIO(data))


def _run(d: Delivery, chunks: int | None = None) -> list[int]:
    """Drain `d` (at most `chunks` produced chunks); the offsets answered, in order."""
    out: list[int] = []
    while chunks is None or d.chunks < chunks:
        got = d.next_chunk(_read, 0)
        if got is None:
            break
        out.extend(o.result.source_offset for o in got)
        d.acked()
    return out


keys = st.lists(
    st.one_of(
        st.integers(min_value=15, max_value=45).map(str),  # ours, foreign, repeated
        st.sampled_from(["x", "021", " 22"]),  # malformed: never an offset's key
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    keys=keys,
    chunk_requests=st.integers(min_value=1, max_value=7),
    chunk_bytes=st.sampled_from([100, 400, 10_000]),
    cut=st.integers(min_value=0, max_value=12),
)
def test_a_delivery_resumed_from_its_cursor_answers_every_request_exactly_once(
    keys: list[str], chunk_requests: int, chunk_bytes: int, cut: int
) -> None:
    items = _items(keys)
    first = Delivery(
        _entry(OFFSETS), "batches/j", items, chunk_requests=chunk_requests, chunk_bytes=chunk_bytes
    )
    before = _run(first, cut)
    cursor = first.cursor  # what the ledger holds after the last acked chunk
    second = Delivery(
        _entry(OFFSETS),
        "batches/j",
        items,
        chunk_requests=chunk_requests,
        chunk_bytes=chunk_bytes,
        resume=cursor,
    )
    after = _run(second)
    assert Counter(before + after) == Counter(OFFSETS)


def test_an_uninterrupted_delivery_ends_with_a_cursor_past_everything() -> None:
    d = Delivery(_entry(OFFSETS), "batches/j", _items(["20", "21", "x", "21"]), chunk_requests=2)
    assert _run(d) == list(OFFSETS)  # in offset order
    assert d.cursor == DeliveryCursor(items=0, scanned=len(OFFSETS), last_key="39")


def test_the_cursor_is_a_prefix_of_the_jobs_offsets() -> None:
    keys = [str(o) for o in reversed(OFFSETS)]
    d = Delivery(_entry(OFFSETS), "batches/j", _items(keys), chunk_requests=7)
    assert _run(d, 2) == list(OFFSETS)[:14]
    assert d.cursor == DeliveryCursor(items=0, scanned=14, last_key="33")


def test_resuming_produces_nothing_answered_before() -> None:
    keys = [str(o) for o in OFFSETS]
    first = Delivery(_entry(OFFSETS), "batches/j", _items(keys), chunk_requests=15)
    assert len(_run(first, 1)) == 15
    second = Delivery(
        _entry(OFFSETS), "batches/j", _items(keys), chunk_bytes=250, resume=first.cursor
    )
    assert _run(second) == list(OFFSETS)[15:]


def test_an_output_that_changed_under_the_cursor_answers_only_the_rest() -> None:
    first = Delivery(
        _entry(OFFSETS), "batches/j", _items([str(o) for o in OFFSETS]), chunk_requests=5
    )
    assert len(_run(first, 1)) == 5
    reordered = [str(o) for o in reversed(OFFSETS)]
    second = Delivery(_entry(OFFSETS), "batches/j", _items(reordered), resume=first.cursor)
    assert _run(second) == list(OFFSETS)[5:]  # no duplicate, nothing lost


def test_an_output_shorter_than_the_cursor_answers_the_rest_without_output() -> None:
    first = Delivery(
        _entry(OFFSETS), "batches/j", _items([str(o) for o in OFFSETS]), chunk_requests=5
    )
    assert len(_run(first, 2)) == 10
    second = Delivery(_entry(OFFSETS), "batches/j", _items(["20", "21"]), resume=first.cursor)
    assert _run(second) == list(OFFSETS)[10:]


def test_a_cursor_resumes_a_delivery_without_any_output() -> None:
    """No output at all: every request is answered NO_OUTPUT, and a resume goes on from the
    cursor instead of answering the first ones again."""
    first = Delivery(_entry(OFFSETS), "batches/j", _items([]), chunk_requests=6)
    assert _run(first, 2) == list(OFFSETS)[:12]
    assert first.cursor == DeliveryCursor(items=0, scanned=12, last_key="31")
    second = Delivery(
        _entry(OFFSETS), "batches/j", _items([]), chunk_requests=6, resume=first.cursor
    )
    assert _run(second) == list(OFFSETS)[12:]


def test_the_cursor_round_trips_through_the_ledger_codec() -> None:
    codec = Codec()
    e = replace(_entry(OFFSETS), attempt=0, delivered=DeliveryCursor(7, 3, "Ключ-7"))
    assert codec.decode_ledger(codec.encode_ledger(e)) == e
    assert codec.decode_ledger(codec.encode_ledger(_entry(OFFSETS))).delivered is None
