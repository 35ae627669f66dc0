"""The reliability fault knobs (lost and late creates, 429 storms, expiry by rate, ...),
observed through the real SDK over HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable

import httpx2
import pytest
from emu_helpers import make_client, raw, wait_done
from google import genai
from google.genai import errors, types

from connector.emulator import EmulatorServer
from connector.emulator.cli import build_parser, config_from_args

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


# -- creates whose reply is lost --------------------------------------------------------------


def _names_by_display(client: genai.Client) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job in client.batches.list():
        out.setdefault(job.display_name or "", []).append(job.name or "")
    return out


def test_lost_reply_trigger_creates_the_job(emulator: EmulatorServer) -> None:
    """The create answers 503 UNAVAILABLE, yet the job exists, is counted and runs."""
    client = make_client(emulator)
    name = "order-7-emulator-lost-reply"
    with pytest.raises(errors.ServerError) as info:
        client.batches.create(model=MODEL, src=ONE, config={"display_name": name})  # type: ignore[arg-type]
    assert info.value.code == 503
    assert info.value.status == "UNAVAILABLE"
    stats = emulator.stats()
    assert stats["batches"]["by_display_name"] == {name: 1}
    assert stats["calls"]["faults.create_reply_lost"] == 1
    [job_name] = _names_by_display(client)[name]
    emulator.advance_clock(5)
    assert client.batches.get(name=job_name).state == JS.JOB_STATE_SUCCEEDED
    other = client.batches.create(model=MODEL, src=ONE, config={"display_name": "plain"})  # type: ignore[arg-type]
    assert other.name


def test_lost_reply_on_create_embeddings(emulator: EmulatorServer) -> None:
    """`:asyncBatchEmbedContent` loses its reply the same way."""
    client = make_client(emulator)
    with pytest.raises(errors.ServerError) as info:
        client.batches.create_embeddings(
            model=EMBED_MODEL,
            src={"inlined_requests": {"contents": ["a", "b"]}},
            config={"display_name": "emb-emulator-lost-reply"},
        )
    assert info.value.code == 503
    assert emulator.stats()["calls"]["batches.create_embeddings"] == 1
    assert list(_names_by_display(client)) == ["emb-emulator-lost-reply"]


def test_blind_retry_of_a_lost_reply_duplicates(emulator: EmulatorServer) -> None:
    """The SDK retries 503 on create: every attempt makes another job (create is not idempotent)."""
    retrying = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=emulator.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.02),
        ),
    )
    name = "dup-emulator-lost-reply"
    with pytest.raises(errors.ServerError):
        retrying.batches.create(model=MODEL, src=ONE, config={"display_name": name})  # type: ignore[arg-type]
    assert emulator.stats()["batches"]["by_display_name"] == {name: 3}
    assert len(_names_by_display(make_client(emulator))[name]) == 3


def test_create_reply_lost_rate_is_seeded(make_emulator: Callable[..., EmulatorServer]) -> None:
    """At 0.5 some creates answer 503, the same ones for the same seed; every job exists."""
    srv = make_emulator(create_reply_lost_rate=0.5, seed=9)
    first = _create_outcomes(srv, 20)
    again = _create_outcomes(make_emulator(create_reply_lost_rate=0.5, seed=9), 20)
    assert set(first) == {None, 503}
    assert first == again
    assert srv.stats()["batches"]["created_total"] == 20
    assert len(list(make_client(srv).batches.list())) == 20


# -- creates that land late -------------------------------------------------------------------


def test_late_create_appears_only_after_the_delay(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """504 DEADLINE_EXCEEDED now; list and get show the job only create_land_delay_s later."""
    srv = make_emulator(create_land_delay_s=30, queue_delay_s=5)
    client = make_client(srv)
    name = "order-8-emulator-late-create"
    asked_at = srv.now()
    with pytest.raises(errors.ServerError) as info:
        client.batches.create(model=MODEL, src=ONE, config={"display_name": name})  # type: ignore[arg-type]
    assert info.value.code == 504
    assert info.value.status == "DEADLINE_EXCEEDED"
    assert list(client.batches.list()) == []
    stats = srv.stats()["batches"]
    assert (stats["landing"], stats["live"], stats["by_display_name"]) == (1, 0, {name: 1})
    srv.advance_clock(29)
    assert list(client.batches.list()) == []
    srv.advance_clock(2)
    [job_name] = _names_by_display(client)[name]
    landed = client.batches.get(name=job_name)
    assert landed.state == JS.JOB_STATE_PENDING
    assert landed.create_time is not None
    assert landed.create_time.timestamp() - asked_at == pytest.approx(30, abs=1)
    srv.advance_clock(5)
    assert client.batches.get(name=job_name).state == JS.JOB_STATE_SUCCEEDED
    assert srv.stats()["batches"]["landing"] == 0


def test_late_create_from_a_file_and_off_by_default(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """File-sourced creates land late too; with create_land_delay_s 0 the trigger does nothing."""
    srv = make_emulator()
    client = make_client(srv)
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    cfg = {"display_name": "emulator-late-create"}
    assert client.batches.create(model=MODEL, src=up.name or "", config=cfg).name
    srv.update_config(create_land_delay_s=10)
    with pytest.raises(errors.ServerError) as info:
        client.batches.create(model=MODEL, src=up.name or "", config=cfg)
    assert info.value.code == 504
    assert len(list(client.batches.list())) == 1
    srv.advance_clock(11)
    assert len(list(client.batches.list())) == 2


def test_create_late_rate_via_control_api(make_emulator: Callable[..., EmulatorServer]) -> None:
    """The knobs are settable over HTTP; at rate 1 every create lands late."""
    srv = make_emulator()
    knobs = {"create_land_delay_s": 60, "create_late_rate": 1.0}
    changed = httpx2.post(f"{srv.base_url}/_emulator/config", json=knobs)
    assert changed.status_code == 200
    assert changed.json()["create_land_delay_s"] == 60
    assert _create_outcomes(srv, 3) == [504, 504, 504]
    assert srv.stats()["batches"]["landing"] == 3
    srv.advance_clock(61)
    assert len(list(make_client(srv).batches.list())) == 3


# -- expired result files ---------------------------------------------------------------------


def test_output_file_ttl_expires_results_only(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """The responsesFile vanishes (403, like any missing file) while the job and input stay."""
    srv = make_emulator(output_file_ttl_s=60)
    client = make_client(srv)
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    result = done.dest.file_name or ""
    assert b'"key":"a"' in client.files.download(file=result)
    srv.advance_clock(61)
    with pytest.raises(errors.ClientError) as info:
        client.files.download(file=result)
    assert info.value.code == 403
    assert info.value.status == "PERMISSION_DENIED"
    with pytest.raises(errors.ClientError):
        client.files.get(name=result)
    media = raw(srv, "GET", f"/download/v1beta/{result}:download?alt=media")
    assert media.status_code == 403
    again = client.batches.get(name=done.name or "")
    assert again.state == JS.JOB_STATE_SUCCEEDED
    assert again.dest is not None
    assert again.dest.file_name == result
    assert client.files.get(name=up.name or "").name == up.name  # input keeps file_ttl_s


def test_output_file_ttl_none_means_file_ttl(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """None (the default, also settable over the control API) falls back to file_ttl_s."""
    srv = make_emulator(output_file_ttl_s=1, file_ttl_s=100)
    reply = httpx2.post(f"{srv.base_url}/_emulator/config", json={"output_file_ttl_s": None})
    assert reply.json()["output_file_ttl_s"] is None
    client = make_client(srv)
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    srv.advance_clock(50)
    assert client.files.download(file=done.dest.file_name or "")


# -- oversized responses ----------------------------------------------------------------------


def test_big_response_inline(emulator: EmulatorServer) -> None:
    """EMULATOR_BIG_<n> adds an image-like inlineData part whose base64 is about n bytes."""
    client = make_client(emulator)
    src = [{"contents": "draw EMULATOR_BIG_2000000 please"}, {"contents": "small"}]
    done = wait_done(client, client.batches.create(model=MODEL, src=src).name or "")  # type: ignore[arg-type]
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    big, small = (r.response for r in done.dest.inlined_responses)
    assert big is not None
    assert small is not None
    assert big.candidates is not None
    assert big.candidates[0].content is not None
    parts = big.candidates[0].content.parts or []
    assert parts[0].text
    blob = parts[-1].inline_data
    assert blob is not None
    assert blob.mime_type == "image/png"
    assert blob.data is not None
    assert blob.data.startswith(b"\x89PNG")
    assert abs(len(blob.data) - 1_500_000) <= 3  # 2 MB of base64 on the wire
    assert small.candidates is not None
    assert small.candidates[0].content is not None
    assert all(p.inline_data is None for p in small.candidates[0].content.parts or [])
    op = raw(emulator, "GET", f"/v1beta/{done.name}").json()
    items = op["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    wire = items[0]["response"]["candidates"][0]["content"]["parts"][-1]["inlineData"]["data"]
    assert abs(len(wire) - 2_000_000) <= 4


def test_big_response_in_file_output_and_cap(emulator: EmulatorServer) -> None:
    """File jobs get the same big part in their JSONL line; sizes above the cap fail alone."""
    client = make_client(emulator)
    lines = [
        {"key": "big", "request": {"contents": [{"parts": [{"text": "EMULATOR_BIG_300000"}]}]}},
        {"key": "huge", "request": {"contents": [{"parts": [{"text": "EMULATOR_BIG_999999999"}]}]}},
    ]
    data = b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    body = client.files.download(file=done.dest.file_name or "")
    out = [json.loads(x) for x in body.splitlines()]
    part = out[0]["response"]["candidates"][0]["content"]["parts"][-1]
    assert abs(len(part["inlineData"]["data"]) - 300_000) <= 4
    assert out[1]["key"] == "huge"
    assert out[1]["error"]["code"] == 400


# -- out-of-order inline responses ------------------------------------------------------------


def _keyed_responses(srv: EmulatorServer, n: int) -> list[tuple[str, str | None, int | None]]:
    """One inline job of n keyed prompts (k3 fails on purpose): (key, text, error code) each."""
    client = make_client(srv)
    src = [
        {"contents": "EMULATOR_FAIL" if i == 3 else f"prompt {i}", "metadata": {"key": f"k{i}"}}
        for i in range(n)
    ]
    done = wait_done(client, client.batches.create(model=MODEL, src=src).name or "")  # type: ignore[arg-type]
    assert done.dest is not None
    out = []
    for item in done.dest.inlined_responses or []:
        assert item.metadata is not None
        text = item.response.text if item.response else None
        out.append((item.metadata["key"], text, item.error.code if item.error else None))
    return out


def test_shuffled_inline_responses_keep_their_metadata(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """Shuffled, seeded order; each response still carries its own key and its own answer."""
    first = _keyed_responses(make_emulator(shuffle_inline_responses=True, seed=3), 10)
    again = _keyed_responses(make_emulator(shuffle_inline_responses=True, seed=3), 10)
    keys = [key for key, _, _ in first]
    assert keys != [f"k{i}" for i in range(10)]
    assert sorted(keys) == sorted(f"k{i}" for i in range(10))
    assert first == again
    for key, text, code in first:
        if key == "k3":
            assert (text, code) == (None, 400)
        else:
            assert f'"prompt {key[1:]}"' in (text or "")
    in_order = _keyed_responses(make_emulator(), 10)
    assert [key for key, _, _ in in_order] == [f"k{i}" for i in range(10)]


def test_shuffle_never_keeps_input_order(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Two responses are always swapped, whatever the seed."""
    for seed in range(4):
        srv = make_emulator(shuffle_inline_responses=True, seed=seed)
        assert [key for key, _, _ in _keyed_responses(srv, 2)] == ["k1", "k0"]


def test_boolean_knob_over_control_api_and_cli(emulator: EmulatorServer) -> None:
    """Booleans accept JSON booleans and true/false/1/0 text; anything else is a 400."""
    url = f"{emulator.base_url}/_emulator/config"
    assert httpx2.post(url, json={"shuffle_inline_responses": "true"}).json()[
        "shuffle_inline_responses"
    ]
    assert emulator.config.shuffle_inline_responses is True
    assert httpx2.post(url, json={"shuffle_inline_responses": False}).status_code == 200
    assert emulator.config.shuffle_inline_responses is False
    assert httpx2.post(url, json={"shuffle_inline_responses": "maybe"}).status_code == 400
    args = build_parser().parse_args(["--shuffle-inline-responses", "1"])
    assert config_from_args(args).shuffle_inline_responses is True
