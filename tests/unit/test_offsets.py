"""`Offsets` behaves like the tuple it replaces, `RangeIndex` like the set it replaces.

Properties against plain models: any sequence of ints (ascending or not, with gaps and
repeats) and any order of adds and removes.
"""

from __future__ import annotations

import itertools
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.codec import offsets_to_ranges, ranges_to_offsets
from connector.core.offsets import Offsets, RangeIndex

# Small values so runs, gaps and repeats all happen often; some big ones as real offsets are.
ints = st.one_of(st.integers(-5, 40), st.integers(2**40, 2**40 + 30))
seqs = st.lists(ints, max_size=40)
ascending = st.lists(st.integers(0, 60), max_size=40, unique=True).map(sorted)


@given(seqs)
def test_offsets_is_the_tuple_it_was_built_from(xs: list[int]) -> None:
    t = tuple(xs)
    o = Offsets(xs)
    assert o == t
    assert t == o
    assert o == t
    assert hash(o) == hash(t)
    assert len(o) == len(t)
    assert bool(o) == bool(t)
    assert list(o) == xs
    assert list(reversed(o)) == xs[::-1]
    assert tuple(o) == t
    for i in range(-len(t), len(t)):
        assert o[i] == t[i]
    for x in set(xs) | {-100, 41}:
        assert (x in o) == (x in t)
        assert o.count(x) == t.count(x)
        if x in t:
            assert o.index(x) == t.index(x)
        else:
            with pytest.raises(ValueError, match="is not in Offsets"):
                o.index(x)
    if t:
        assert o.max() == max(t)
    assert list(o.ranges()) == offsets_to_ranges(t)
    assert Offsets.from_ranges(o.ranges()) == o
    assert pickle.loads(pickle.dumps(o)) == o


@given(seqs, st.integers(-45, 45), st.integers(-45, 45), st.sampled_from([None, 1, 2, -1]))
def test_offsets_slices_like_a_tuple(xs: list[int], a: int, b: int, step: int | None) -> None:
    t = tuple(xs)
    o = Offsets(xs)
    s = o[a:b:step]
    assert isinstance(s, Offsets)
    assert s == t[a:b:step]
    assert o[a:] + o[:a] == t[a:] + t[:a]


@given(seqs)
def test_offsets_index_out_of_range(xs: list[int]) -> None:
    o = Offsets(xs)
    with pytest.raises(IndexError):
        o[len(xs)]
    with pytest.raises(IndexError):
        o[-len(xs) - 1]


@given(seqs, seqs)
def test_offsets_equal_exactly_when_the_tuples_are(xs: list[int], ys: list[int]) -> None:
    assert (Offsets(xs) == Offsets(ys)) == (xs == ys)
    assert (Offsets(xs) == tuple(ys)) == (xs == ys)
    assert Offsets(xs) != list(xs)  # a list is not a tuple, as for tuples


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 12)), max_size=12))
def test_offsets_from_ranges_expands_like_the_codec(runs: list[tuple[int, int]]) -> None:
    ranges = [(s, s + n) for s, n in runs]
    assert Offsets.from_ranges(ranges) == ranges_to_offsets(ranges)


def test_offsets_store_runs_not_offsets() -> None:
    o = Offsets(range(1_000_000, 1_010_000))
    assert o.run_count == 1
    assert len(o) == 10_000
    assert o[:5_000].run_count == 1
    assert o[5_000:][0] == 1_005_000
    with pytest.raises(ValueError, match="ends before it starts"):
        Offsets.from_ranges([(5, 4)])


# -- RangeIndex ----------------------------------------------------------------------


ops = st.lists(st.tuples(st.booleans(), seqs), max_size=25)


@settings(max_examples=300)
@given(ops)
def test_range_index_is_a_set(steps: list[tuple[bool, list[int]]]) -> None:
    idx = RangeIndex()
    model: set[int] = set()
    for add, xs in steps:
        target = Offsets(xs) if len(xs) % 2 else xs  # by runs, or by plain iterable
        if add:
            idx.update(target)
            model.update(xs)
        else:
            idx.difference_update(target)
            model.difference_update(xs)
        assert idx == model
        assert len(idx) == len(model)
        for x in set(xs) | {min(model, default=0) - 1, max(model, default=0) + 1}:
            assert (x in idx) == (x in model)
        # Canonical: sorted, disjoint, never adjacent.
        runs = list(idx.ranges())
        assert all(s <= e for s, e in runs)
        assert all(e1 + 1 < s2 for (_, e1), (s2, _) in itertools.pairwise(runs))


@given(st.lists(ascending, max_size=8))
def test_range_index_of_jobs_merges_their_runs(jobs: list[list[int]]) -> None:
    idx = RangeIndex()
    for j in jobs:
        idx.update(Offsets(j))
    union = set().union(*map(set, jobs)) if jobs else set()
    assert idx == union
    assert idx.run_count == len(offsets_to_ranges(sorted(union)))


def test_range_index_interleaved_jobs_merge_into_one_run() -> None:
    idx = RangeIndex()
    for k in range(4):  # four batch keys taking turns on one partition
        idx.update(Offsets(range(1000 + k, 41_000, 4)))
    assert idx.run_count == 1
    assert 1000 in idx
    assert 40_999 in idx
    assert 41_000 not in idx
    idx.difference_update(Offsets(range(1001, 41_000, 4)))
    assert idx.run_count == 10_001
    assert 1001 not in idx
    assert 1002 in idx
