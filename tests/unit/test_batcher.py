"""The batcher: which batch a request joins and when batches seal."""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core import policy
from connector.core.batcher import Batcher, BatchLimits
from connector.core.records import BatchKey, Kind, PendingRequest, RequestEvent, SealedBatch
from connector.errors import ConfigError

_ids = itertools.count()


def req(
    offset: int,
    *,
    partition: int = 0,
    model: str = "m",
    kind: Kind = Kind.GENERATE,
    size: int = 10,
    tokens: int = 5,
    group: str = "",
    priority: int = 0,
) -> PendingRequest:
    event = RequestEvent(
        request_id=f"r{next(_ids)}",
        model=model,
        kind=kind,
        body="{}",
        group=group,
        priority=priority,
    )
    return PendingRequest(partition, offset, event, size, tokens)


def limits(**kw: object) -> BatchLimits:
    base: dict[str, object] = {
        "max_requests": 3,
        "max_bytes": 100,
        "inline_max_bytes": 50,
        "max_wait_s": 5.0,
    }
    base.update(kw)
    return BatchLimits(**base)  # type: ignore[arg-type]


def offsets(batches: list[SealedBatch]) -> list[tuple[int, ...]]:
    return [b.offsets for b in batches]


# -- sealing on count and bytes ------------------------------------------------------------


def test_seals_when_count_reached() -> None:
    """The add that brings a batch to max_requests returns it sealed, in arrival order."""
    b = Batcher(limits(max_requests=3))
    assert b.add(req(0), 0.0) == []
    assert b.add(req(1), 0.0) == []
    sealed = b.add(req(2), 0.0)
    assert offsets(sealed) == [(0, 1, 2)]
    assert len(b) == 0
    assert b.open_bytes == 0


def test_seals_open_batch_before_request_that_would_exceed_bytes() -> None:
    """A request that would push the batch past max_bytes seals it and starts the next."""
    b = Batcher(limits(max_requests=10, max_bytes=100))
    b.add(req(0, size=40), 0.0)
    b.add(req(1, size=40), 0.0)
    sealed = b.add(req(2, size=30), 1.0)
    assert offsets(sealed) == [(0, 1)]
    assert sealed[0].size == 80
    assert len(b) == 1
    assert b.open_bytes == 30


def test_seals_when_bytes_reached_exactly() -> None:
    """A batch that reaches max_bytes exactly cannot take more, so it seals at once."""
    b = Batcher(limits(max_requests=10, max_bytes=100))
    b.add(req(0, size=60), 0.0)
    sealed = b.add(req(1, size=40), 0.0)
    assert offsets(sealed) == [(0, 1)]


def test_oversized_request_is_a_batch_alone() -> None:
    """A request above max_bytes seals the open batch, then seals alone as a file job."""
    b = Batcher(limits(max_requests=10, max_bytes=100, inline_max_bytes=50))
    b.add(req(0, size=10), 0.0)
    sealed = b.add(req(1, size=150), 0.0)
    assert offsets(sealed) == [(0,), (1,)]
    assert [s.use_file for s in sealed] == [False, True]
    assert len(b) == 0


def test_use_file_by_size_and_kind() -> None:
    """Batches above inline_max_bytes, and every FILE_KINDS batch, go through a file."""
    b = Batcher(limits(max_requests=1, inline_max_bytes=50))
    (at_limit,) = b.add(req(0, size=50), 0.0)
    (above,) = b.add(req(1, size=51), 0.0)
    (embed,) = b.add(req(2, size=1, kind=Kind.EMBED), 0.0)
    assert not at_limit.use_file
    assert above.use_file
    assert embed.use_file


def test_keys_never_mix() -> None:
    """Requests differing in partition, model, kind, priority or group get separate batches."""
    b = Batcher(limits(max_requests=100))
    variants = [
        req(0),
        req(0, partition=1),
        req(1, model="other"),
        req(2, kind=Kind.EMBED),
        req(3, priority=1),
        req(4, group="g"),
        req(5),
    ]
    for r in variants:
        b.add(r, 0.0)
    sealed = b.drain()
    assert len(sealed) == 6
    by_key = {s.key: s.offsets for s in sealed}
    assert by_key[BatchKey(0, "m", Kind.GENERATE)] == (0, 5)
    for s in sealed:
        assert all(r.key == s.key for r in s.requests)


def test_sealed_batch_totals() -> None:
    """A sealed batch's size is the sum of its requests' sizes; tokens likewise."""
    b = Batcher(limits())
    b.add(req(0, size=7, tokens=3), 0.0)
    b.add(req(1, size=8, tokens=4), 0.0)
    (s,) = b.drain()
    assert s.size == 15
    assert s.est_tokens == 7


# -- sealing on age -----------------------------------------------------------------------


def test_due_seals_at_max_wait_not_before() -> None:
    """A batch is due max_wait_s after its first request, however late the others came."""
    b = Batcher(limits(max_requests=10, max_wait_s=5.0))
    b.add(req(0), 10.0)
    b.add(req(1), 14.0)
    assert b.next_due() == 15.0
    assert b.due(14.999) == []
    assert offsets(b.due(15.0)) == [(0, 1)]
    assert b.next_due() is None
    assert b.due(100.0) == []


def test_due_of_next_due_always_seals() -> None:
    """Calling due(next_due()) seals the batch, even with inexact float sums."""
    b = Batcher(limits(max_wait_s=0.1))
    b.add(req(0), 0.2)
    t = b.next_due()
    assert t is not None
    assert offsets(b.due(t)) == [(0,)]


def test_due_returns_only_aged_batches_oldest_first() -> None:
    """due seals the batches old enough, oldest first, and leaves younger ones open."""
    b = Batcher(limits(max_requests=10, max_wait_s=5.0))
    b.add(req(0, model="b"), 1.0)
    b.add(req(0, model="a", partition=1), 2.0)
    b.add(req(1, model="c"), 4.0)
    sealed = b.due(7.0)
    assert [s.key.model for s in sealed] == ["b", "a"]
    assert len(b) == 1
    assert b.next_due() == 9.0


def test_new_batch_after_count_seal_has_its_own_age() -> None:
    """After a count seal, the key's next batch ages from its own first request."""
    b = Batcher(limits(max_requests=2, max_wait_s=5.0))
    b.add(req(0), 0.0)
    b.add(req(1), 1.0)  # sealed by count
    b.add(req(2), 3.0)
    assert b.next_due() == 8.0
    assert b.due(5.0) == []
    assert offsets(b.due(8.0)) == [(2,)]


def test_zero_wait_is_due_immediately() -> None:
    """max_wait_s = 0 makes every batch due at the time of its first request."""
    b = Batcher(limits(max_wait_s=0.0))
    b.add(req(0), 3.0)
    assert offsets(b.due(3.0)) == [(0,)]


# -- revocation and shutdown --------------------------------------------------------------


def test_drop_partition_returns_requests_by_offset_and_forgets_them() -> None:
    """Revoking a partition returns its open requests in offset order; others stay open."""
    b = Batcher(limits(max_requests=10))
    b.add(req(0, partition=2, model="x"), 0.0)
    b.add(req(1, partition=2, model="y"), 0.0)
    b.add(req(2, partition=2, model="x"), 0.0)
    b.add(req(0, partition=3, size=7), 1.0)
    dropped = b.drop_partition(2)
    assert [r.offset for r in dropped] == [0, 1, 2]
    assert len(b) == 1
    assert b.open_bytes == 7
    assert b.next_due() == 6.0  # the dropped batches' heap entries are skipped
    assert [s.key.partition for s in b.due(100.0)] == [3]
    assert b.drop_partition(2) == []


def test_dropped_key_reopens_fresh() -> None:
    """A key dropped and re-added opens a new batch aged from the new request."""
    b = Batcher(limits(max_wait_s=5.0))
    b.add(req(0), 0.0)
    b.drop_partition(0)
    b.add(req(0), 10.0)
    assert b.due(5.0) == []
    assert b.next_due() == 15.0


def test_drain_seals_everything() -> None:
    """drain seals every open batch and leaves the batcher empty."""
    b = Batcher(limits(max_requests=10))
    b.add(req(0), 0.0)
    b.add(req(0, partition=1), 0.0)
    assert len(b.drain()) == 2
    assert len(b) == 0
    assert b.open_bytes == 0
    assert b.next_due() is None
    assert b.drain() == []


@pytest.mark.parametrize(
    "kw",
    [{"max_requests": 0}, {"max_bytes": 0}, {"inline_max_bytes": -1}, {"max_wait_s": -1.0}],
)
def test_limits_reject_nonsense(kw: dict[str, object]) -> None:
    """Limits that could never seal, or seal before anything arrives, are config errors."""
    with pytest.raises(ConfigError):
        limits(**kw)


def test_default_limits_match_gemini() -> None:
    """Defaults: 1000 requests, 100 MB files, inline below 20 MB, 5 s, embeddings by file."""
    d = BatchLimits()
    assert (d.max_requests, d.max_bytes, d.inline_max_bytes, d.max_wait_s) == (
        1000,
        100_000_000,
        19_000_000,
        5.0,
    )
    assert frozenset({Kind.EMBED}) == policy.FILE_KINDS


# -- properties ---------------------------------------------------------------------------

_KEYS = [
    (0, "a", Kind.GENERATE),
    (0, "b", Kind.GENERATE),
    (1, "a", Kind.EMBED),
    (2, "a", Kind.GENERATE),
]

_op = st.one_of(
    st.tuples(
        st.just("add"),
        st.integers(0, len(_KEYS) - 1),
        st.integers(1, 120),  # size, sometimes above max_bytes
        st.floats(0, 3),  # time step
    ),
    st.tuples(st.just("due"), st.just(0), st.just(0), st.floats(0, 8)),
    st.tuples(st.just("drop"), st.integers(0, 2), st.just(0), st.just(0.0)),
)


@settings(max_examples=150, deadline=None)
@given(
    ops=st.lists(_op, max_size=80),
    max_requests=st.integers(1, 6),
    max_bytes=st.integers(1, 100),
    inline_max_bytes=st.integers(0, 100),
    max_wait_s=st.floats(0, 5),
)
def test_batcher_properties(
    ops: list[tuple[str, int, int, float]],
    max_requests: int,
    max_bytes: int,
    inline_max_bytes: int,
    max_wait_s: float,
) -> None:
    """Any sequence of adds, dues and drops keeps every batching invariant.

    Every added request ends in exactly one sealed batch or one drop; no batch mixes keys,
    exceeds max_requests, or exceeds max_bytes unless it is a single request; offsets
    ascend within a batch; use_file follows kind and size; age seals are never early and
    never leave an overdue batch open; len and open_bytes match what is outstanding.
    """
    lim = BatchLimits(max_requests, max_bytes, inline_max_bytes, max_wait_s)
    b = Batcher(lim)
    now = 0.0
    next_offset: dict[int, int] = defaultdict(int)
    added: dict[tuple[int, int], PendingRequest] = {}
    first_seen: dict[tuple[int, int], float] = {}
    out: list[tuple[int, int]] = []
    sealed_all: list[SealedBatch] = []

    def collect(batches: list[SealedBatch]) -> None:
        sealed_all.extend(batches)
        out.extend((r.partition, r.offset) for s in batches for r in s.requests)

    for op, arg, size, dt in ops:
        if op == "add":
            partition, model, kind = _KEYS[arg]
            now += dt
            off = next_offset[partition]
            next_offset[partition] += 1
            r = req(off, partition=partition, model=model, kind=kind, size=size)
            added[(partition, off)] = r
            first_seen[(partition, off)] = now
            collect(b.add(r, now))
        elif op == "due":
            now += dt
            batches = b.due(now)
            for s in batches:
                opened = first_seen[(s.key.partition, s.requests[0].offset)]
                assert opened + max_wait_s <= now  # never early
            collect(batches)
            nd = b.next_due()
            assert nd is None or nd > now  # nothing overdue is left open
        else:
            out.extend((r.partition, r.offset) for r in b.drop_partition(arg))
        outstanding = set(added) - set(out)
        assert len(b) == len(outstanding)
        assert b.open_bytes == sum(added[k].size for k in outstanding)

    collect(b.drain())
    assert len(b) == 0
    assert b.open_bytes == 0
    assert sorted(out) == sorted(added)  # exactly once each
    for s in sealed_all:
        assert s.requests
        assert all(r.key == s.key for r in s.requests)
        assert len(s.requests) <= max_requests
        assert s.size == sum(r.size for r in s.requests)
        assert s.size <= max_bytes or len(s.requests) == 1
        assert list(s.offsets) == sorted(set(s.offsets))
        assert s.use_file == (s.key.kind is Kind.EMBED or s.size > inline_max_bytes)
        if not s.use_file:
            assert s.size <= inline_max_bytes


# -- purity -------------------------------------------------------------------------------

_CORE = ["batcher", "watermark", "policy", "quota", "partitions", "recovery", "ports"]
_LEAVES = {"connector.errors", "connector.defaults"}
_IMPURE = {"time", "datetime", "random", "secrets", "os", "socket", "threading", "asyncio"}


@pytest.mark.parametrize("module", _CORE)
def test_core_modules_are_pure(module: str) -> None:
    """The core imports only the stdlib (no clocks, randomness or I/O) and the leaf modules.

    Decisions that read no clock and do no I/O can be tested exhaustively and replayed.
    """
    import ast
    import sys
    from pathlib import Path

    import connector

    src = Path(connector.__file__).parent / "core" / f"{module}.py"
    imported: set[str] = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "connector":
            imported.update(f"connector.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    for name in imported:
        top = name.split(".")[0]
        if top == "connector":
            assert name.startswith("connector.core.") or name in _LEAVES, name
        else:
            assert top in sys.stdlib_module_names or top == "__future__", name
            assert top not in _IMPURE, name


def test_seals_before_the_enqueued_token_cap() -> None:
    """A11: a batch never holds more estimated tokens than the model's cap: Gemini would
    refuse that job with 429 however long it waited."""
    b = Batcher(limits(max_requests=100, max_bytes=10_000, max_tokens=100))
    sealed = [s for i in range(7) for s in b.add(req(i, tokens=30), 0.0)]
    assert offsets(sealed) == [(0, 1, 2), (3, 4, 5)]
    assert all(s.est_tokens <= 100 for s in sealed)
    assert offsets(b.drain()) == [(6,)]


def test_seals_when_the_token_cap_is_reached_exactly() -> None:
    b = Batcher(limits(max_requests=100, max_bytes=10_000, max_tokens=60))
    assert b.add(req(0, tokens=30), 0.0) == []
    assert offsets(b.add(req(1, tokens=30), 0.0)) == [(0, 1)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=60), st.integers(1, 120))
def test_no_batch_over_the_token_cap_unless_alone(tokens: list[int], cap: int) -> None:
    b = Batcher(limits(max_requests=1_000, max_bytes=10**9, max_tokens=cap))
    sealed = [s for i, t in enumerate(tokens) for s in b.add(req(i, tokens=t), 0.0)]
    sealed += b.drain()
    assert sum(len(s.requests) for s in sealed) == len(tokens)
    for s in sealed:
        assert s.est_tokens <= cap or len(s.requests) == 1
