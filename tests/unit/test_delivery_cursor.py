"""The delivery cursor (ledger v3): a delivery cut off after any chunk and resumed from the
cursor its ledger entry recorded answers every request exactly once, whatever the output
holds (repeated, foreign and malformed keys, missing lines); an output that changed under
the cursor is delivered again from the start (duplicates, never a loss)."""

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
    assert sorted(_run(d)) == list(OFFSETS)
    assert d.cursor == DeliveryCursor(items=4, scanned=len(OFFSETS), last_key="21")


def test_resuming_skips_answered_items_in_bounded_empty_chunks() -> None:
    """Re-reading a big file up to the cursor spans passes (chunk bytes), producing nothing."""
    keys = [str(o) for o in OFFSETS]
    first = Delivery(_entry(OFFSETS), "batches/j", _items(keys), chunk_requests=15)
    assert len(_run(first, 1)) == 15
    second = Delivery(
        _entry(OFFSETS), "batches/j", _items(keys), chunk_bytes=250, resume=first.cursor
    )
    sizes = []
    while (got := second.next_chunk(_read, 0)) is not None:
        sizes.append(len(got))
        second.acked()
    skipped = sizes[: sizes.index(next(n for n in sizes if n))]
    assert len(skipped) >= 3  # several passes of re-reading only, each bounded by bytes
    assert sum(sizes) == 5
    assert 0 not in sizes[len(skipped) :]
    assert second.chunks == len(sizes) - len(skipped)


def test_an_output_that_changed_under_the_cursor_is_delivered_again_from_the_start() -> None:
    first = Delivery(
        _entry(OFFSETS), "batches/j", _items([str(o) for o in OFFSETS]), chunk_requests=5
    )
    assert len(_run(first, 1)) == 5
    reordered = [str(o) for o in reversed(OFFSETS)]
    second = Delivery(_entry(OFFSETS), "batches/j", _items(reordered), resume=first.cursor)
    assert sorted(_run(second)) == list(OFFSETS)  # all again: 5 duplicates, nothing lost


def test_an_output_shorter_than_the_cursor_is_delivered_again_from_the_start() -> None:
    first = Delivery(
        _entry(OFFSETS), "batches/j", _items([str(o) for o in OFFSETS]), chunk_requests=5
    )
    assert len(_run(first, 2)) == 10
    second = Delivery(_entry(OFFSETS), "batches/j", _items(["20", "21"]), resume=first.cursor)
    assert sorted(_run(second)) == list(OFFSETS)


def test_a_cursor_inside_the_missing_scan_resumes_there() -> None:
    """No output at all: every request is answered NO_OUTPUT, and a resume goes on from the
    scan position instead of answering the first ones again."""
    first = Delivery(_entry(OFFSETS), "batches/j", _items([]), chunk_requests=6)
    assert _run(first, 2) == list(OFFSETS)[:12]
    assert first.cursor == DeliveryCursor(items=0, scanned=12, last_key="")
    second = Delivery(
        _entry(OFFSETS), "batches/j", _items([]), chunk_requests=6, resume=first.cursor
    )
    assert _run(second) == list(OFFSETS)[12:]


def test_the_cursor_round_trips_through_the_ledger_codec() -> None:
    codec = Codec()
    e = replace(_entry(OFFSETS), attempt=0, delivered=DeliveryCursor(7, 3, "Ключ-7"))
    assert codec.decode_ledger(codec.encode_ledger(e)) == e
    assert codec.decode_ledger(codec.encode_ledger(_entry(OFFSETS))).delivered is None
