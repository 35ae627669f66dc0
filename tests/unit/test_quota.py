"""Quota admission: a replica's share of the project budget and who may be created now."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.quota import Budget, admit, share, should_pause
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry

_ids = itertools.count()


def job(
    model: str = "flash",
    tokens: int = 100,
    state: EntryState = EntryState.SUBMITTED,
    job_id: str | None = None,
) -> LedgerEntry:
    jid = job_id or f"p0-{next(_ids)}-n"
    return LedgerEntry(
        job_id=jid,
        key=BatchKey(0, model, Kind.GENERATE),
        offsets=(0,),
        attempt=1,
        display_name=f"g:{jid}",
        state=state,
        use_file=False,
        est_tokens=tokens,
        created_ms=0,
        updated_ms=0,
    )


# -- share --------------------------------------------------------------------------------


def test_share_is_proportional_floor() -> None:
    """A replica with 3 of 12 partitions gets a quarter of every limit, rounded down."""
    b = Budget(max_jobs=100, tokens_per_model={"flash": 3_000_001}, default_tokens=10)
    s = share(b, 3, 12)
    assert s.max_jobs == 25
    assert s.tokens_per_model == {"flash": 750_000}
    assert s.default_tokens == 2


def test_share_at_least_one_job_when_assigned() -> None:
    """Any assigned partition earns at least one job, or it could never progress."""
    assert share(Budget(max_jobs=100), 1, 1000).max_jobs == 1


def test_share_nothing_assigned_admits_nothing() -> None:
    """A replica without partitions gets no jobs at all."""
    s = share(Budget(), 0, 12)
    assert s.max_jobs == 0
    assert not admit(job(), [], s)


def test_share_everything_is_the_whole_budget() -> None:
    """Owning every partition gives the full budget."""
    b = Budget(max_jobs=100, tokens_per_model={"pro": 5_000_000})
    assert share(b, 12, 12) == b


@pytest.mark.parametrize(("assigned", "total"), [(1, 0), (-1, 4), (5, 4)])
def test_share_rejects_impossible_assignments(assigned: int, total: int) -> None:
    """More partitions assigned than exist, or none existing, is a caller bug."""
    with pytest.raises(ValueError, match="assigned"):
        share(Budget(), assigned, total)


@given(
    max_jobs=st.integers(0, 500),
    tokens=st.integers(0, 10**8),
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=20),
)
def test_shares_never_overrun_budget_beyond_minimum_guarantee(
    max_jobs: int, tokens: int, sizes: list[int]
) -> None:
    """Summed over replicas that split the partitions, shares stay within the project budget.

    Job shares may exceed it only by the one-job minimum of replicas whose floor is 0;
    token shares never exceed it.
    """
    total = sum(sizes)
    if total == 0:
        return
    b = Budget(max_jobs=max_jobs, default_tokens=tokens, tokens_per_model={"m": tokens})
    shares = [share(b, n, total) for n in sizes]
    floors_zero = sum(1 for n in sizes if n > 0 and max_jobs * n // total == 0)
    assert sum(s.max_jobs for s in shares) <= max_jobs + floors_zero
    assert sum(s.default_tokens for s in shares) <= tokens
    assert sum(s.token_cap("m") for s in shares) <= tokens


# -- admit --------------------------------------------------------------------------------


def test_admit_below_job_limit() -> None:
    """Fewer live jobs than max_jobs: admitted; at the limit: held back."""
    b = Budget(max_jobs=2)
    assert admit(job(), [job(model="a")], b)
    assert not admit(job(), [job(model="a"), job(model="b")], b)


def test_admit_tokens_up_to_cap_inclusive() -> None:
    """The model's live tokens plus the entry's may reach the cap, not pass it."""
    b = Budget(tokens_per_model={"flash": 1000})
    live = [job(tokens=600)]
    assert admit(job(tokens=400), live, b)
    assert not admit(job(tokens=401), live, b)


def test_admit_other_models_do_not_count_against_tokens() -> None:
    """Each model has its own token cap; other models only count as jobs."""
    b = Budget(tokens_per_model={"flash": 1000, "pro": 10})
    assert admit(job(model="flash", tokens=1000), [job(model="pro", tokens=10)], b)


def test_admit_unknown_model_uses_default_cap() -> None:
    """Models missing from tokens_per_model get default_tokens."""
    b = Budget(default_tokens=500)
    assert admit(job(model="new", tokens=300), [job(model="new", tokens=200)], b)
    assert not admit(job(model="new", tokens=301), [job(model="new", tokens=200)], b)


def test_admit_oversized_entry_alone() -> None:
    """An entry above its model's cap runs when nothing of that model is live, else waits."""
    b = Budget(tokens_per_model={"flash": 1000})
    assert admit(job(tokens=5000), [job(model="pro", tokens=9)], b)
    assert not admit(job(tokens=5000), [job(tokens=1)], b)


def test_admit_oversized_still_respects_job_limit() -> None:
    """The oversized exception is about tokens only: the job count still applies."""
    b = Budget(max_jobs=1, tokens_per_model={"flash": 10})
    assert not admit(job(tokens=50), [job(model="pro")], b)


def test_admit_ignores_intents_and_itself() -> None:
    """Waiting INTENTs hold no provider quota, and an entry is never counted against itself."""
    b = Budget(max_jobs=1, tokens_per_model={"flash": 100})
    me = job(tokens=100, job_id="p0-1-me")
    waiting = [job(state=EntryState.INTENT, tokens=100) for _ in range(5)]
    assert admit(me, [*waiting, job(tokens=100, job_id="p0-1-me")], b)


def test_admit_accepts_a_generator() -> None:
    """`live` may be any iterable, read once."""
    b = Budget(max_jobs=3)
    assert admit(job(), (job(model=str(i)) for i in range(2)), b)


def test_budget_is_a_snapshot() -> None:
    """Mutating the dict a Budget was built from does not change the Budget."""
    caps = {"flash": 10}
    b = Budget(tokens_per_model=caps)
    caps["flash"] = 10**9
    assert b.token_cap("flash") == 10
    assert Budget().max_jobs == 100
    assert Budget().token_cap("any") == 3_000_000


# -- pause --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "bound", "pause"), [(0, 10, False), (9, 10, False), (10, 10, True), (11, 10, True)]
)
def test_should_pause_at_bound(waiting: int, bound: int, pause: bool) -> None:
    """Consuming pauses once the waiting INTENTs reach the bound, and resumes below it."""
    assert should_pause(waiting, bound) is pause


def test_a_429_for_a_job_alone_over_the_cap_is_recognised() -> None:
    """A11: nothing queued, or more requested than the whole cap: only a split helps."""
    from connector.core.quota import over_cap_alone

    emulator = (
        "Gemini API error 429 RESOURCE_EXHAUSTED: Enqueued token limit of 3000000 for "
        "gemini-2.5-flash exceeded (0 queued, 3270000 requested)."
    )
    assert over_cap_alone(emulator)
    assert over_cap_alone("limit of 3M tokens exceeded (1.2M queued, 3.27M requested)")
    assert not over_cap_alone("limit of 3M tokens exceeded (2.5M queued, 1M requested)")
    assert not over_cap_alone("Gemini API error 429 RESOURCE_EXHAUSTED: quota exceeded")


def test_only_a_splittable_job_over_the_whole_cap_is_too_big() -> None:
    from dataclasses import replace

    from connector.core.quota import too_big

    one = job(tokens=5_000)
    two = replace(one, offsets=(0, 1))
    assert too_big(two, 4_000)
    assert not too_big(one, 4_000)  # a single request cannot be split
    assert not too_big(two, 5_000)
