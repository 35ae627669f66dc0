"""Job lifecycle through the SDK: every terminal state, cancel, delete, list paging, priority."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable

import pytest
from emu_helpers import make_client, raw, wait_done, wait_done_async
from google import genai
from google.genai import errors, types

from connector.emulator import EmulatorServer

JS = types.JobState
ONE = [{"contents": "hello"}]


def test_states_progress_pending_running_succeeded(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """With a frozen-looking timeline (long delays), only clock advances move the job."""
    srv = make_emulator(queue_delay_s=100, processing_delay_s=100)
    client = make_client(srv)
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    name = job.name or ""
    assert client.batches.get(name=name).state == JS.JOB_STATE_PENDING
    srv.advance_clock(100)
    running = client.batches.get(name=name)
    assert running.state == JS.JOB_STATE_RUNNING
    assert not running.done
    srv.advance_clock(100)
    done = client.batches.get(name=name)
    assert done.state == JS.JOB_STATE_SUCCEEDED
    assert done.done
    assert done.end_time is not None
    assert done.create_time is not None
    assert 199 <= (done.end_time - done.create_time).total_seconds() <= 205


def test_default_timing_not_instant_and_a_few_seconds(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """Default knobs: a fresh job is PENDING, a cancel right after create wins."""
    srv = make_emulator(queue_delay_s=0.5, processing_delay_s=1.0, per_request_delay_s=0.0001)
    client = make_client(srv)
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    assert job.state == JS.JOB_STATE_PENDING
    client.batches.cancel(name=job.name or "")
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_CANCELLED
    other = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    assert wait_done(client, other.name or "", timeout=10).state == JS.JOB_STATE_SUCCEEDED


def test_failed_by_display_name_trigger(client: genai.Client, emulator: EmulatorServer) -> None:
    """A display name containing emulator-fail-job ends FAILED, with an Operation error."""
    job = client.batches.create(
        model="gemini-2.5-flash", src=ONE, config={"display_name": "x-emulator-fail-job"}
    )  # type: ignore[arg-type]
    done = wait_done(client, job.name or "")
    assert done.state == JS.JOB_STATE_FAILED
    assert done.done
    assert done.dest is None
    op = raw(emulator, "GET", f"/v1beta/{job.name}").json()
    assert op["done"] is True
    assert op["error"]["code"] == 13
    assert "response" not in op


def test_expired_by_display_name_trigger(client: genai.Client) -> None:
    """A display name containing emulator-expire-job ends EXPIRED."""
    job = client.batches.create(
        model="gemini-2.5-flash", src=ONE, config={"display_name": "emulator-expire-job"}
    )  # type: ignore[arg-type]
    assert wait_done(client, job.name or "").state == JS.JOB_STATE_EXPIRED


def test_expiry_after_48_hours_on_the_clock(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Jobs stuck PENDING (no running slots) expire when the clock passes 48 h."""
    srv = make_emulator(running_slots=0)
    client = make_client(srv)
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    srv.advance_clock(47 * 3600)
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_PENDING
    srv.advance_clock(3600 + 1)
    expired = client.batches.get(name=job.name or "")
    assert expired.state == JS.JOB_STATE_EXPIRED
    assert expired.end_time is not None
    assert expired.create_time is not None
    assert abs((expired.end_time - expired.create_time).total_seconds() - 48 * 3600) < 5


def test_expiry_knob_in_seconds(make_emulator: Callable[..., EmulatorServer]) -> None:
    """`expiry_s` shortens the 48 h so real-time tests can see EXPIRED."""
    srv = make_emulator(expiry_s=0.2, queue_delay_s=10)
    client = make_client(srv)
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    assert wait_done(client, job.name or "").state == JS.JOB_STATE_EXPIRED


def test_force_state_control(
    client: genai.Client, make_emulator: Callable[..., EmulatorServer]
) -> None:
    """The control API forces FAILED and EXPIRED (in-process and over HTTP)."""
    srv = make_emulator(queue_delay_s=100)
    client = make_client(srv)
    a = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    b = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    c = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    srv.force_state(a.name or "", "FAILED")
    resp = raw(
        srv, "POST", f"/_emulator/{b.name}:force", json={"state": "BATCH_STATE_EXPIRED"}, headers={}
    )
    assert resp.status_code == 200
    assert resp.json()["metadata"]["state"] == "BATCH_STATE_EXPIRED"
    srv.force_state(c.name or "", "JOB_STATE_SUCCEEDED")
    assert client.batches.get(name=a.name or "").state == JS.JOB_STATE_FAILED
    assert client.batches.get(name=b.name or "").state == JS.JOB_STATE_EXPIRED
    forced = client.batches.get(name=c.name or "")
    assert forced.state == JS.JOB_STATE_SUCCEEDED
    assert forced.dest is not None
    assert forced.dest.inlined_responses is not None


def test_cancel_running_job_stops_it(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Cancelling a RUNNING job leaves it CANCELLED with no output; a second cancel is 400."""
    srv = make_emulator(queue_delay_s=0, processing_delay_s=100)
    client = make_client(srv)
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_RUNNING
    assert client.batches.cancel(name=job.name or "") is None
    srv.advance_clock(1000)
    cancelled = client.batches.get(name=job.name or "")
    assert cancelled.state == JS.JOB_STATE_CANCELLED
    assert cancelled.done
    assert cancelled.dest is None
    with pytest.raises(errors.ClientError) as info:
        client.batches.cancel(name=job.name or "")
    assert info.value.code == 400


def test_delete_then_404(client: genai.Client) -> None:
    """After delete, get answers 404 NOT_FOUND and the job leaves the list."""
    job = client.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    deleted = client.batches.delete(name=job.name or "")
    assert isinstance(deleted, types.DeleteResourceJob)
    with pytest.raises(errors.ClientError) as info:
        client.batches.get(name=job.name or "")
    assert info.value.code == 404
    assert info.value.status == "NOT_FOUND"
    assert job.name not in {j.name for j in client.batches.list()}


def test_list_paging(client: genai.Client) -> None:
    """list(page_size=2) over 7 jobs: newest first, every job once, no empty page."""
    names = [client.batches.create(model="gemini-2.5-flash", src=ONE).name for _ in range(7)]  # type: ignore[arg-type]
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2
    listed = [j.name for j in pager]
    assert listed == list(reversed(names))
    assert all(j.state is not None for j in client.batches.list(config={"page_size": 100}))


def test_priority_runs_first(make_emulator: Callable[..., EmulatorServer]) -> None:
    """With one slot busy, a later high-priority job starts before an earlier low-priority one."""
    srv = make_emulator(queue_delay_s=0, processing_delay_s=100, running_slots=1)
    client = make_client(srv)

    def create(priority: int) -> str:
        config = types.CreateBatchJobConfig(
            http_options=types.HttpOptions(extra_body={"batch": {"priority": str(priority)}})
        )
        return client.batches.create(model="gemini-2.5-flash", src=ONE, config=config).name or ""  # type: ignore[arg-type]

    busy, low, high = create(0), create(-5), create(7)
    state = lambda n: client.batches.get(name=n).state  # noqa: E731
    assert (state(busy), state(low), state(high)) == (
        JS.JOB_STATE_RUNNING,
        JS.JOB_STATE_PENDING,
        JS.JOB_STATE_PENDING,
    )
    srv.advance_clock(100)
    assert (state(busy), state(low), state(high)) == (
        JS.JOB_STATE_SUCCEEDED,
        JS.JOB_STATE_PENDING,
        JS.JOB_STATE_RUNNING,
    )
    srv.advance_clock(100)
    assert (state(low), state(high)) == (JS.JOB_STATE_RUNNING, JS.JOB_STATE_SUCCEEDED)
    assert raw(srv, "GET", f"/v1beta/{high}").json()["metadata"]["priority"] == "7"


def test_create_is_not_idempotent(client: genai.Client, emulator: EmulatorServer) -> None:
    """The same create twice makes two jobs, as on the real service."""
    a = client.batches.create(model="gemini-2.5-flash", src=ONE, config={"display_name": "same"})  # type: ignore[arg-type]
    b = client.batches.create(model="gemini-2.5-flash", src=ONE, config={"display_name": "same"})  # type: ignore[arg-type]
    assert a.name != b.name
    assert emulator.stats()["batches"]["by_display_name"] == {"same": 2}


def test_operation_wire_shape(client: genai.Client, emulator: EmulatorServer) -> None:
    """Raw Operation JSON: BATCH_STATE_*, string int64s, RFC 3339 times, output mirrored."""
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[{"contents": "a", "metadata": {"key": "k"}}, {"contents": "EMULATOR_FAIL"}],
    )  # type: ignore[list-item]
    wait_done(client, job.name or "")
    op = raw(emulator, "GET", f"/v1beta/{job.name}").json()
    meta = op["metadata"]
    assert op["name"] == job.name
    assert op["done"] is True
    assert meta["state"] == "BATCH_STATE_SUCCEEDED"
    assert meta["batchStats"] == {
        "requestCount": "2",
        "successfulRequestCount": "1",
        "failedRequestCount": "1",
        "pendingRequestCount": "0",
    }
    assert meta["priority"] == "0"
    assert meta["createTime"].endswith("Z")
    assert "T" in meta["createTime"]
    assert (
        meta["output"]["inlinedResponses"]
        == {k: v for k, v in op["response"].items() if k != "@type"}["inlinedResponses"]
    )
    assert op["response"]["@type"].endswith("GenerateContentBatchOutput")
    items = meta["output"]["inlinedResponses"]["inlinedResponses"]
    assert items[0]["metadata"] == {"key": "k"}
    assert set(items[1]["error"]) <= {"code", "message", "status"}


def test_async_client_full_flow(emulator: EmulatorServer) -> None:
    """client.aio: create, get, list, cancel, delete, upload, download, over httpx2 async."""
    asyncio.run(_async_flow(emulator))


async def _async_flow(emulator: EmulatorServer) -> None:
    client = make_client(emulator)
    job = await client.aio.batches.create(
        model="gemini-2.5-flash",
        src=[{"contents": "async hi", "metadata": {"key": "a1"}}],
        config={"display_name": "aio"},
    )
    done = await wait_done_async(client, job.name or "")
    assert done.state == JS.JOB_STATE_SUCCEEDED
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    assert done.dest.inlined_responses[0].metadata == {"key": "a1"}
    names = [j.name async for j in await client.aio.batches.list(config={"page_size": 1})]
    assert names == [job.name]
    other = await client.aio.batches.create(model="gemini-2.5-flash", src=ONE)  # type: ignore[arg-type]
    await client.aio.batches.cancel(name=other.name or "")
    assert (await client.aio.batches.get(name=other.name or "")).state == JS.JOB_STATE_CANCELLED
    await client.aio.batches.delete(name=other.name or "")
    with pytest.raises(errors.ClientError):
        await client.aio.batches.get(name=other.name or "")
    data = b'{"key": "f1", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    up = await client.aio.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    fjob = await client.aio.batches.create(model="gemini-2.5-flash", src=up.name or "")
    fdone = await wait_done_async(client, fjob.name or "")
    assert fdone.dest is not None
    assert fdone.dest.file_name
    content = await client.aio.files.download(file=fdone.dest.file_name)
    assert json.loads(content.splitlines()[0])["key"] == "f1"
