"""Job identity, terminal-state decisions and poll timing."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core import policy
from connector.core.policy import (
    MAX_DISPLAY_NAME,
    Deliver,
    GiveUp,
    Resubmit,
    RetryPolicy,
    backoff_with_jitter,
    display_name,
    new_intent,
    new_job_id,
    next_poll_delay,
    on_terminal,
    split_offsets,
    submitted,
)
from connector.core.records import (
    BatchKey,
    EntryState,
    JobState,
    Kind,
    LedgerEntry,
    PendingRequest,
    RequestEvent,
    SealedBatch,
)
from connector.errors import ConfigError

KEY = BatchKey(3, "gemini-2.5-flash", Kind.GENERATE)
PREFIX = "grp"
POLICY = RetryPolicy()


def entry(
    offsets: tuple[int, ...] = (10, 11, 12, 13, 14),
    attempt: int = 0,
    job_id: str = "p3-10-abc",
    est_tokens: int = 100,
    use_file: bool = False,
) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=KEY,
        offsets=offsets,
        attempt=attempt,
        display_name=display_name(PREFIX, job_id),
        state=EntryState.SUBMITTED,
        use_file=use_file,
        est_tokens=est_tokens,
        created_ms=1,
        updated_ms=2,
        provider_job="batches/1",
        input_file="files/1",
    )


# -- identity -----------------------------------------------------------------------------


def test_new_job_id_format() -> None:
    """A fresh id names the partition and first offset, and ends in the nonce."""
    assert new_job_id(3, 1200, "8f2a1c") == "p3-1200-8f2a1c"


@pytest.mark.parametrize("nonce", ["", "a/b", "a:b"])
def test_new_job_id_rejects_separator_nonces(nonce: str) -> None:
    """A nonce with '/' or ':' would be confused with derived ids or the display prefix."""
    with pytest.raises(ValueError, match="nonce"):
        new_job_id(0, 0, nonce)


def test_display_name_short_is_prefix_and_id() -> None:
    """A short name is readable: the prefix, a colon, the job id."""
    assert display_name("orders-llm", "p0-5-x/a") == "orders-llm:p0-5-x/a"


def test_display_name_long_is_shortened_deterministically() -> None:
    """Long names fit MAX_DISPLAY_NAME, repeat exactly, and stay distinct when ids differ."""
    prefix = "g" * 200
    a = display_name(prefix, "p0-1-x")
    b = display_name(prefix, "p0-2-x")
    assert len(a) == len(b) == MAX_DISPLAY_NAME
    assert a == display_name(prefix, "p0-1-x")
    assert a != b


def test_display_name_at_limit_is_untouched() -> None:
    """A name of exactly MAX_DISPLAY_NAME characters is not hashed."""
    job = "j" * (MAX_DISPLAY_NAME - 2)
    assert display_name("g", job) == f"g:{job}"


def test_new_intent_from_sealed_batch() -> None:
    """The INTENT carries the batch's key, offsets, size class and tokens, at attempt 0."""
    ev = RequestEvent("r", KEY.model, KEY.kind, "{}")
    reqs = (PendingRequest(3, 7, ev, 10, 4), PendingRequest(3, 9, ev, 20, 6))
    batch = SealedBatch(KEY, reqs, 30, True)
    e = new_intent(batch, "p3-7-n", PREFIX, 1000)
    assert e == LedgerEntry(
        job_id="p3-7-n",
        key=KEY,
        offsets=(7, 9),
        attempt=0,
        display_name="grp:p3-7-n",
        state=EntryState.INTENT,
        use_file=True,
        est_tokens=10,
        created_ms=1000,
        updated_ms=1000,
    )


def test_submitted_records_provider_names() -> None:
    """SUBMITTED keeps identity and creation time, adds the provider names, bumps updated_ms."""
    e = replace(entry(), state=EntryState.INTENT, provider_job=None, input_file=None)
    s = submitted(e, "batches/9", "files/3", 5000)
    assert s.state is EntryState.SUBMITTED
    assert (s.provider_job, s.input_file, s.updated_ms) == ("batches/9", "files/3", 5000)
    assert (s.job_id, s.display_name, s.offsets, s.created_ms) == (
        e.job_id,
        e.display_name,
        e.offsets,
        e.created_ms,
    )


# -- split --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offsets", "halves"),
    [
        ((), ((), ())),
        ((1,), ((1,), ())),
        ((1, 2), ((1,), (2,))),
        ((1, 5, 9), ((1, 5), (9,))),
    ],
)
def test_split_offsets_examples(
    offsets: tuple[int, ...], halves: tuple[tuple[int, ...], tuple[int, ...]]
) -> None:
    """Halves by count; the first half takes the odd one out."""
    assert split_offsets(offsets) == halves


@given(st.lists(st.integers(0, 10**9), unique=True).map(lambda xs: tuple(sorted(xs))))
def test_split_offsets_partitions(offsets: tuple[int, ...]) -> None:
    """The halves concatenate back to the input and differ in size by at most one."""
    a, b = split_offsets(offsets)
    assert a + b == offsets
    assert abs(len(a) - len(b)) <= 1


# -- on_terminal table --------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 3, 5, 9])
def test_succeeded_delivers_at_any_attempt(attempt: int) -> None:
    """A SUCCEEDED job is delivered, whatever attempt it was."""
    assert on_terminal(entry(attempt=attempt), JobState.SUCCEEDED, POLICY, 0) == Deliver()


@pytest.mark.parametrize(
    ("attempt", "retry_id"),
    [(0, "p3-10-abc/r1"), (1, "p3-10-abc/r2")],
)
def test_failed_with_budget_retries_whole(attempt: int, retry_id: str) -> None:
    """FAILED with failed retries left: one whole retry j/r{attempt+1} at attempt + 1."""
    out = on_terminal(entry(attempt=attempt), JobState.FAILED, POLICY, 777)
    assert isinstance(out, Resubmit)
    (r,) = out.entries
    assert r.job_id == retry_id
    assert r.attempt == attempt + 1
    assert r.offsets == entry().offsets
    assert r.est_tokens == 100


def test_failed_out_of_failed_retries_gives_up() -> None:
    """With max_failed_retries = 2, the third failure (attempt 2) becomes 500 INTERNAL."""
    assert isinstance(on_terminal(entry(attempt=1), JobState.FAILED, POLICY, 0), Resubmit)
    out = on_terminal(entry(attempt=2), JobState.FAILED, POLICY, 0)
    assert isinstance(out, GiveUp)
    assert (out.error.code, out.error.status) == (500, "INTERNAL")
    assert "failed after 3 attempt" in out.error.message
    assert "p3-10-abc" in out.error.message


def test_failed_bounded_by_max_attempts_too() -> None:
    """Generous failed retries still stop at max_attempts."""
    policy = RetryPolicy(max_failed_retries=10, max_attempts=3)
    assert isinstance(on_terminal(entry(attempt=1), JobState.FAILED, policy, 0), Resubmit)
    assert isinstance(on_terminal(entry(attempt=2), JobState.FAILED, policy, 0), GiveUp)


def test_failed_never_retried_with_zero_retries() -> None:
    """max_failed_retries = 0 turns the first failure into error results."""
    policy = RetryPolicy(max_failed_retries=0)
    assert isinstance(on_terminal(entry(attempt=0), JobState.FAILED, policy, 0), GiveUp)


def test_expired_splits_into_halves() -> None:
    """EXPIRED with attempts left: j/a and j/b at attempt + 1, offsets and tokens split."""
    out = on_terminal(entry(attempt=1, est_tokens=101), JobState.EXPIRED, POLICY, 999)
    assert isinstance(out, Resubmit)
    a, b = out.entries
    assert (a.job_id, b.job_id) == ("p3-10-abc/a", "p3-10-abc/b")
    assert (a.offsets, b.offsets) == ((10, 11, 12), (13, 14))
    assert a.attempt == b.attempt == 2
    assert a.est_tokens + b.est_tokens == 101
    assert a.est_tokens == 101 * 3 // 5


def test_expired_single_request_retried_whole() -> None:
    """A one-request job cannot be split, so it is resubmitted whole as j/r{attempt+1}."""
    out = on_terminal(entry(offsets=(42,), attempt=0), JobState.EXPIRED, POLICY, 0)
    assert isinstance(out, Resubmit)
    (r,) = out.entries
    assert (r.job_id, r.offsets, r.attempt) == ("p3-10-abc/r1", (42,), 1)


def test_expired_at_last_attempt_gives_up() -> None:
    """EXPIRED on the last attempt (4, the fifth): 504 DEADLINE_EXCEEDED error results."""
    assert isinstance(on_terminal(entry(attempt=3), JobState.EXPIRED, POLICY, 0), Resubmit)
    out = on_terminal(entry(attempt=4), JobState.EXPIRED, POLICY, 0)
    assert isinstance(out, GiveUp)
    assert (out.error.code, out.error.status) == (504, "DEADLINE_EXCEEDED")
    assert "expired on attempt 5 of 5" in out.error.message


@pytest.mark.parametrize("attempt", [0, 5])
def test_cancelled_gives_up(attempt: int) -> None:
    """A CANCELLED job is not retried: 499 CANCELLED for every request."""
    out = on_terminal(entry(attempt=attempt), JobState.CANCELLED, POLICY, 0)
    assert isinstance(out, GiveUp)
    assert (out.error.code, out.error.status) == (499, "CANCELLED")


@pytest.mark.parametrize(("max_failed", "max_attempts"), [(0, 5), (2, 5), (2, 3), (4, 2), (0, 1)])
def test_retry_budget_counts_attempts_from_zero(max_failed: int, max_attempts: int) -> None:
    """A job that always fails runs min(1 + max_failed_retries, max_attempts) times; one that
    always expires runs max_attempts times. The first job is attempt 0 (the schemas' rule)."""
    policy = RetryPolicy(max_failed_retries=max_failed, max_attempts=max_attempts)
    for state, expected in (
        (JobState.FAILED, min(1 + max_failed, max_attempts)),
        (JobState.EXPIRED, max_attempts),
    ):
        e = new_intent(
            SealedBatch(
                KEY,
                (PendingRequest(3, 7, RequestEvent("r", KEY.model, KEY.kind, "{}"), 1, 1),),
                1,
                False,
            ),
            "p3-7-n",
            PREFIX,
            0,
        )
        attempts = [e.attempt]
        while isinstance(out := on_terminal(e, state, policy, 0), Resubmit):
            (e,) = out.entries
            attempts.append(e.attempt)
        assert attempts == list(range(expected)), state
        assert (
            f"{expected} attempt" in out.error.message
            or f"attempt {expected} of" in out.error.message
        )


@pytest.mark.parametrize("state", [JobState.PENDING, JobState.RUNNING, JobState.UNKNOWN])
def test_non_terminal_state_is_a_caller_bug(state: JobState) -> None:
    """Only terminal states have an outcome."""
    with pytest.raises(ValueError, match="terminal"):
        on_terminal(entry(), state, POLICY, 0)


@pytest.mark.parametrize("state", [JobState.FAILED, JobState.EXPIRED])
@pytest.mark.parametrize("use_file", [False, True])
def test_derived_entries_are_fresh_intents(state: JobState, use_file: bool) -> None:
    """Derived entries are INTENTs with no provider names, created now, same key and use_file.

    Their display names are what display_name(prefix, derived_id) gives.
    """
    out = on_terminal(entry(use_file=use_file), state, POLICY, 4242)
    assert isinstance(out, Resubmit)
    for d in out.entries:
        assert d.state is EntryState.INTENT
        assert d.provider_job is None
        assert d.input_file is None
        assert d.created_ms == d.updated_ms == 4242
        assert d.key == KEY
        assert d.use_file is use_file
        assert d.display_name == display_name(PREFIX, d.job_id)


def test_derivation_is_deterministic() -> None:
    """The same entry and state give the same derived entries: a repeat writes the same keys."""
    for state in (JobState.FAILED, JobState.EXPIRED):
        assert on_terminal(entry(), state, POLICY, 5) == on_terminal(entry(), state, POLICY, 5)


def test_long_display_names_stay_valid_when_derived() -> None:
    """Deep derivations of a long-prefixed job keep distinct names of at most 128 chars."""
    long = replace(entry(), display_name=display_name("x" * 150, "p3-10-abc"))
    out = on_terminal(long, JobState.EXPIRED, POLICY, 0)
    assert isinstance(out, Resubmit)
    names = {d.display_name for d in out.entries} | {long.display_name}
    assert len(names) == 3
    assert all(len(n) <= MAX_DISPLAY_NAME for n in names)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    choices=st.lists(st.tuples(st.integers(0, 10**6), st.booleans()), max_size=60),
    max_attempts=st.integers(1, 6),
    max_failed=st.integers(0, 4),
    long_prefix=st.booleans(),
)
def test_any_job_history_keeps_requests_and_ids(
    n: int,
    choices: list[tuple[int, bool]],
    max_attempts: int,
    max_failed: int,
    long_prefix: bool,
) -> None:
    """Whatever jobs fail or expire, in any order, every request stays in exactly one place.

    Live entries, delivered jobs and given-up jobs always partition the original offsets;
    every job id and display name ever written is unique; attempts never pass max_attempts.
    """
    policy = RetryPolicy(max_failed_retries=max_failed, max_attempts=max_attempts)
    prefix = "p" * 140 if long_prefix else PREFIX
    root = replace(
        entry(offsets=tuple(range(100, 100 + n)), est_tokens=10 * n),
        display_name=display_name(prefix, "p3-100-z"),
        job_id="p3-100-z",
    )
    live = [root]
    done: list[int] = []
    ids = {root.job_id}
    names = {root.display_name}
    for pick, expire in choices:
        if not live:
            break
        e = live.pop(pick % len(live))
        out = on_terminal(e, JobState.EXPIRED if expire else JobState.FAILED, policy, 0)
        if isinstance(out, Resubmit):
            assert sum(d.est_tokens for d in out.entries) == e.est_tokens
            for d in out.entries:
                assert d.job_id not in ids
                assert d.display_name not in names
                assert len(d.display_name) <= MAX_DISPLAY_NAME
                assert d.attempt == e.attempt + 1 < max_attempts
                ids.add(d.job_id)
                names.add(d.display_name)
                live.append(d)
        else:
            assert isinstance(out, GiveUp)
            done.extend(e.offsets)
    held = [o for e in live for o in e.offsets] + done
    assert sorted(held) == list(root.offsets)


# -- timing -------------------------------------------------------------------------------


def test_poll_delay_grows_then_caps() -> None:
    """Polls back off by poll_factor from poll_initial_s and stop growing at poll_max_s."""
    p = RetryPolicy(poll_initial_s=2.0, poll_max_s=10.0, poll_factor=2.0)
    assert [next_poll_delay(n, p) for n in range(5)] == [2.0, 4.0, 8.0, 10.0, 10.0]


def test_poll_delay_extremes() -> None:
    """Negative counts start at the initial delay; huge counts cap without overflowing."""
    assert next_poll_delay(-3, POLICY) == POLICY.poll_initial_s
    assert next_poll_delay(10**6, POLICY) == POLICY.poll_max_s


def test_backoff_full_jitter() -> None:
    """Full jitter scales the capped exponential by rand: zero at rand 0, below cap always."""
    assert backoff_with_jitter(3, 1.0, 100.0, 0.0) == 0.0
    assert backoff_with_jitter(3, 1.0, 100.0, 0.5) == 4.0
    assert backoff_with_jitter(30, 1.0, 100.0, 0.5) == 50.0
    assert backoff_with_jitter(10**6, 1.0, 100.0, 0.25) == 25.0


@pytest.mark.parametrize("rand", [-0.1, 1.0, float("nan")])
def test_backoff_rejects_rand_outside_unit_interval(rand: float) -> None:
    """rand comes from random.random(): [0, 1); anything else is a caller bug."""
    with pytest.raises(ValueError, match="rand"):
        backoff_with_jitter(1, 1.0, 10.0, rand)


@given(
    attempt=st.integers(-5, 10_000),
    base=st.floats(0.001, 100),
    cap=st.floats(0.001, 1000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_backoff_bounded(attempt: int, base: float, cap: float, rand: float) -> None:
    """The delay is never negative and never above the cap."""
    d = backoff_with_jitter(attempt, base, cap, rand)
    assert 0.0 <= d <= cap


def test_backoff_deterministic_given_rand() -> None:
    """The same inputs give the same delay: the shell owns the randomness."""
    r = random.Random(7).random()
    assert backoff_with_jitter(4, 0.5, 30.0, r) == backoff_with_jitter(4, 0.5, 30.0, r)


@pytest.mark.parametrize(
    "kw",
    [
        {"max_failed_retries": -1},
        {"max_attempts": 0},
        {"poll_initial_s": 0.0},
        {"poll_initial_s": 5.0, "poll_max_s": 1.0},
        {"poll_factor": 0.5},
    ],
)
def test_retry_policy_rejects_nonsense(kw: dict[str, float]) -> None:
    """Policies that could never poll or never end are config errors."""
    with pytest.raises(ConfigError):
        RetryPolicy(**kw)  # type: ignore[arg-type]


@given(
    done=st.integers(min_value=0, max_value=10_000),
    took=st.floats(min_value=0, max_value=100, allow_nan=False),
    slower=st.floats(min_value=1, max_value=100, allow_nan=False),
    cap=st.integers(min_value=1, max_value=10_000),
)
def test_next_delivery_chunk_stays_within_bounds_and_shrinks_when_slower(
    done: int, took: float, slower: float, cap: int
) -> None:
    n = policy.next_chunk_size(done, took, cap)
    assert min(policy.DELIVERY_CHUNK_MIN, cap) <= n <= cap
    assert policy.next_chunk_size(done, took * slower, cap) <= n


def test_next_delivery_chunk_aims_at_the_target_time() -> None:
    # 2,000 results took 1 s (a loaded machine): the next chunk takes ~0.25 s of them.
    assert policy.next_chunk_size(2_000, 1.0, 2_000) == 500
    assert policy.next_chunk_size(2_000, 0.1, 2_000) == 2_000  # fast: the cap
    assert policy.next_chunk_size(2_000, 60.0, 2_000) == policy.DELIVERY_CHUNK_MIN
    assert policy.next_chunk_size(0, 0.0, 2_000) == 2_000  # nothing measured yet
