"""The reliability fault knobs (lost and late creates, 429 storms, expiry by rate, ...),
observed through the real SDK over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from emu_helpers import make_client
from google import genai
from google.genai import errors, types

from connector.emulator import EmulatorServer

JS = types.JobState
ONE = [{"contents": "hello"}]
MODEL = "gemini-2.5-flash"
EMBED_MODEL = "gemini-embedding-001"


def _create_outcomes(srv: EmulatorServer, n: int) -> list[int | None]:
    """n creates in a row: the HTTP error code of each (None = created)."""
    client = make_client(srv)
    out: list[int | None] = []
    for _ in range(n):
        try:
            client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
            out.append(None)
        except errors.APIError as exc:
            out.append(exc.code)
    return out


def _final_states(srv: EmulatorServer, n: int) -> list[JS | None]:
    """n jobs created, the clock moved past their end: each job's terminal state."""
    client = make_client(srv)
    names = [client.batches.create(model=MODEL, src=ONE).name or "" for _ in range(n)]  # type: ignore[arg-type]
    srv.advance_clock(60)
    return [client.batches.get(name=name).state for name in names]


# -- 429 storms -------------------------------------------------------------------------------


def test_rate_limit_rate_refuses_creates(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Rate 1: every create (generate and embeddings) is 429 RESOURCE_EXHAUSTED, no job made."""
    srv = make_emulator(rate_limit_rate=1.0)
    client = make_client(srv)
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    assert info.value.code == 429
    assert info.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(errors.ClientError) as info:
        client.batches.create_embeddings(
            model=EMBED_MODEL, src={"inlined_requests": {"contents": ["a"]}}
        )
    assert info.value.code == 429
    assert list(client.batches.list()) == []  # reads are not rate limited
    stats = srv.stats()
    assert stats["batches"]["created_total"] == 0
    assert stats["calls"]["faults.rate_limit"] == 2
    srv.update_config(rate_limit_rate=0.0)
    client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]


def test_rate_limit_rate_is_seeded(make_emulator: Callable[..., EmulatorServer]) -> None:
    """At 0.5 some creates are refused: the same ones for the same seed."""
    first = _create_outcomes(make_emulator(rate_limit_rate=0.5, seed=4), 24)
    again = _create_outcomes(make_emulator(rate_limit_rate=0.5, seed=4), 24)
    other = _create_outcomes(make_emulator(rate_limit_rate=0.5, seed=5), 24)
    assert set(first) == {None, 429}
    assert first == again
    assert first != other


def test_rate_limit_storm_survived_by_sdk_retries(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """429 is in the SDK's retried codes: a retrying client gets its creates through."""
    srv = make_emulator(rate_limit_rate=0.7, seed=1)
    sturdy = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=srv.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=30, initial_delay=0.01, max_delay=0.02),
        ),
    )
    names = {sturdy.batches.create(model=MODEL, src=ONE).name for _ in range(3)}  # type: ignore[arg-type]
    assert len(names) == 3
    assert srv.stats()["calls"]["faults.rate_limit"] >= 1


# -- expiry by rate ---------------------------------------------------------------------------


def test_job_expiry_rate(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Rate 1 expires every job when it would have finished; rate 0 lets the next succeed."""
    srv = make_emulator(job_expiry_rate=1.0)
    assert _final_states(srv, 2) == [JS.JOB_STATE_EXPIRED] * 2
    srv.update_config(job_expiry_rate=0.0)
    assert _final_states(srv, 1) == [JS.JOB_STATE_SUCCEEDED]


def test_job_expiry_rate_is_seeded(make_emulator: Callable[..., EmulatorServer]) -> None:
    """At 0.5 some jobs expire and the others succeed: the same ones for the same seed."""
    first = _final_states(make_emulator(job_expiry_rate=0.5, seed=2), 16)
    again = _final_states(make_emulator(job_expiry_rate=0.5, seed=2), 16)
    assert set(first) == {JS.JOB_STATE_EXPIRED, JS.JOB_STATE_SUCCEEDED}
    assert first == again
