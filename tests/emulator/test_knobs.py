"""Every limit and fault knob, observed through the real SDK (or raw HTTP where the SDK can't)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest
from emu_helpers import make_client, raw, wait_done, wait_until
from google.genai import errors, types

from connector.emulator import EmulatorServer
from connector.emulator.service import call_name

JS = types.JobState
ONE = [{"contents": "hello"}]
MODEL = "gemini-2.5-flash"


def _codes(srv: EmulatorServer, n: int) -> list[int | None]:
    """Run one inline job of n requests; the error code of each (None = success)."""
    client = make_client(srv)
    job = client.batches.create(model=MODEL, src=[{"contents": f"prompt {i}"} for i in range(n)])  # type: ignore[misc]
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    return [r.error.code if r.error else None for r in done.dest.inlined_responses]


def test_request_error_rate_is_seeded(make_emulator: Callable[..., EmulatorServer]) -> None:
    """A 30 % per-request error rate hits some requests, the same ones for the same seed."""
    first = _codes(make_emulator(request_error_rate=0.3, seed=7), 200)
    second = _codes(make_emulator(request_error_rate=0.3, seed=7), 200)
    other_seed = _codes(make_emulator(request_error_rate=0.3, seed=8), 200)
    failures = sum(c is not None for c in first)
    assert 30 <= failures <= 90
    assert set(first) == {None, 500}
    assert first == second
    assert first != other_seed


def test_request_error_rate_in_file_output(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Rate 1.0 turns every line of a file job into an error line."""
    import json

    srv = make_emulator(request_error_rate=1.0)
    client = make_client(srv)
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n' * 3
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    assert done.dest.file_name
    lines = [json.loads(x) for x in client.files.download(file=done.dest.file_name).splitlines()]
    assert [x["error"]["code"] for x in lines] == [500, 500, 500]
    op = raw(srv, "GET", f"/v1beta/{done.name}").json()
    assert op["metadata"]["batchStats"]["failedRequestCount"] == "3"


def test_job_failure_rate(make_emulator: Callable[..., EmulatorServer]) -> None:
    """job_failure_rate=1 fails every job; changing it at run time takes effect for new jobs."""
    srv = make_emulator(job_failure_rate=1.0)
    client = make_client(srv)
    job = client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    assert wait_done(client, job.name or "").state == JS.JOB_STATE_FAILED
    srv.update_config(job_failure_rate=0.0)
    job = client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    assert wait_done(client, job.name or "").state == JS.JOB_STATE_SUCCEEDED


def test_transient_errors_and_sdk_retries(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Rate 1 refuses every call with 500/503; at 0.5 an SDK with retries gets through."""
    srv = make_emulator(transient_error_rate=1.0)
    client = make_client(srv)
    with pytest.raises(errors.ServerError) as info:
        client.batches.list()
    assert info.value.code in (500, 503)
    assert info.value.status in ("INTERNAL", "UNAVAILABLE")
    srv.update_config(transient_error_rate=0.5, seed=3)
    retrying = types.HttpOptions(
        base_url=srv.base_url,
        api_version="v1beta",
        retry_options=types.HttpRetryOptions(attempts=20, initial_delay=0.01, max_delay=0.02),
    )
    from google import genai

    sturdy = genai.Client(api_key="k", http_options=retrying)
    names = [sturdy.batches.create(model=MODEL, src=ONE).name for _ in range(3)]  # type: ignore[arg-type]
    assert len(set(names)) == 3
    assert srv.stats()["calls"]["faults.transient"] >= 1


def test_latency_ms(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Added latency delays each API call by at least the configured time."""
    srv = make_emulator(latency_ms=150)
    client = make_client(srv)
    started = time.monotonic()
    client.batches.list()
    assert time.monotonic() - started >= 0.15


def test_in_flight_counts_a_call_from_its_arrival(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """A slow call is in flight (by its `calls` name) while its latency runs, before `calls`
    counts it; once answered it is no longer in flight."""
    srv = make_emulator(latency_ms=600)
    client = make_client(srv)
    worker = threading.Thread(target=client.batches.list)
    worker.start()
    try:
        wait_until(lambda: srv.stats()["in_flight"] == {"batches.list": 1}, 5, "list in flight")
        assert "batches.list" not in srv.stats()["calls"]
    finally:
        worker.join(timeout=10)
    stats = srv.stats()
    assert stats["in_flight"] == {}
    assert stats["calls"]["batches.list"] == 1


@pytest.mark.parametrize(
    ("method", "path", "query", "name"),
    [
        ("POST", "/upload/v1beta/files", {}, "files.upload"),
        ("PUT", "/upload/v1beta/files", {"upload_id": "u"}, "files.upload_chunk"),
        ("POST", "/v1beta/models/gemini-2.5-flash:batchGenerateContent", {}, "batches.create"),
        ("POST", "/v1/models/m:asyncBatchEmbedContent", {}, "batches.create_embeddings"),
        ("GET", "/v1beta/batches", {}, "batches.list"),
        ("GET", "/v1beta/batches/abc", {}, "batches.get"),
        ("POST", "/v1beta/batches/abc:cancel", {}, "batches.cancel"),
        ("DELETE", "/v1beta/batches/abc", {}, "batches.delete"),
        ("GET", "/v1beta/files/f1", {}, "files.get"),
        ("GET", "/download/v1beta/files/f1:download", {}, "files.download"),
        ("GET", "/nowhere", {}, "other"),
    ],
)
def test_call_names_match_the_calls_counters(
    method: str, path: str, query: dict[str, str], name: str
) -> None:
    """`in_flight` names a request as `calls` will once it is answered."""
    assert call_name(method, path, query) == name


def test_max_concurrent_jobs(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Beyond the concurrent-job cap create gets 429 RESOURCE_EXHAUSTED; a cancel frees room."""
    srv = make_emulator(max_concurrent_jobs=2, queue_delay_s=100)
    client = make_client(srv)
    first = client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    assert info.value.code == 429
    assert info.value.status == "RESOURCE_EXHAUSTED"
    client.batches.cancel(name=first.name or "")
    client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    assert srv.stats()["batches"]["created_total"] == 3


def test_default_concurrency_cap_is_100(make_emulator: Callable[..., EmulatorServer]) -> None:
    """The default cap: 100 jobs in flight are fine, the 101st is refused."""
    srv = make_emulator(queue_delay_s=100)
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": "x"}}]}}}}
    url = f"/v1beta/models/{MODEL}:batchGenerateContent"
    with httpx2.Client(base_url=srv.base_url, headers={"x-goog-api-key": "k"}) as http:
        assert all(http.post(url, json=body).status_code == 200 for _ in range(100))
        refused = http.post(url, json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_enqueued_token_cap_per_model(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Tokens queued per model are capped; another model still has room."""
    srv = make_emulator(enqueued_token_cap=300, queue_delay_s=100)
    client = make_client(srv)
    big = [{"contents": "word " * 100}]
    client.batches.create(model=MODEL, src=big)  # type: ignore[arg-type]
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model=MODEL, src=big)  # type: ignore[arg-type]
    assert info.value.code == 429
    client.batches.create(model="gemini-2.5-pro", src=big)  # type: ignore[arg-type]


def test_inline_payload_over_20_mb_is_400(emulator: EmulatorServer) -> None:
    """The default 20 MB cap on inline create bodies answers 400 INVALID_ARGUMENT."""
    text = "x" * (21 * 1024 * 1024)
    body = {"batch": {"inputConfig": {"requests": {"requests": [{"request": {"contents": text}}]}}}}
    resp = raw(emulator, "POST", f"/v1beta/models/{MODEL}:batchGenerateContent", json=body)
    assert resp.status_code == 400
    assert resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "payload size" in resp.json()["error"]["message"]
    assert emulator.stats()["batches"]["created_total"] == 0


def test_inline_payload_knob_through_sdk(make_emulator: Callable[..., EmulatorServer]) -> None:
    """A lowered max_inline_request_bytes is enforced on SDK creates; the connection survives."""
    srv = make_emulator(max_inline_request_bytes=2_000)
    client = make_client(srv)
    with pytest.raises(errors.ClientError) as info:
        client.batches.create(model=MODEL, src=[{"contents": "y" * 5_000}])  # type: ignore[list-item]
    assert info.value.code == 400
    client.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]


def test_file_size_cap(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Uploads above max_file_bytes are refused with 400."""
    srv = make_emulator(max_file_bytes=1_000)
    client = make_client(srv)
    with pytest.raises(errors.ClientError) as info:
        client.files.upload(file=io.BytesIO(b"x" * 2_000), config={"mime_type": "jsonl"})
    assert info.value.code == 400
    client.files.upload(file=io.BytesIO(b"x" * 500), config={"mime_type": "jsonl"})
    start = raw(
        srv,
        "POST",
        "/upload/v1beta/files",
        headers={
            "x-goog-api-key": "k",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "5000",
        },
    )
    assert start.status_code == 400
    assert start.headers["x-goog-upload-status"] == "final"


def test_storage_cap(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Total live bytes above max_storage_bytes: 429; deleting a file frees space."""
    srv = make_emulator(max_storage_bytes=1_500)
    client = make_client(srv)
    first = client.files.upload(file=io.BytesIO(b"x" * 1_000), config={"mime_type": "jsonl"})
    with pytest.raises(errors.ClientError) as info:
        client.files.upload(file=io.BytesIO(b"x" * 1_000), config={"mime_type": "jsonl"})
    assert info.value.code == 429
    client.files.delete(name=first.name or "")
    client.files.upload(file=io.BytesIO(b"x" * 1_000), config={"mime_type": "jsonl"})


def test_files_vanish_after_48_hours(emulator: EmulatorServer) -> None:
    """Uploaded and generated files are gone once the clock passes the 48 h retention."""
    client = make_client(emulator)
    data = b'{"key": "a", "request": {"contents": [{"parts": [{"text": "x"}]}]}}\n'
    up = client.files.upload(file=io.BytesIO(data), config={"mime_type": "jsonl"})
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    assert done.dest.file_name
    emulator.advance_clock(47 * 3600)
    assert client.files.get(name=up.name or "").name == up.name
    emulator.advance_clock(2 * 3600)
    for name in (up.name or "", done.dest.file_name):
        with pytest.raises(errors.ClientError) as info:
            client.files.get(name=name)
        assert info.value.code == 403
    assert list(client.files.list()) == []
    assert client.batches.get(name=done.name or "").state == JS.JOB_STATE_SUCCEEDED


def test_api_key_rules(make_emulator: Callable[..., EmulatorServer]) -> None:
    """--api-key: wrong key 400 API_KEY_INVALID, none 403; uploads by URL and control need none."""
    srv = make_emulator(api_key="s3cret")
    wrong = make_client(srv, key="wrong")  # keep a reference: a dropped Client closes its pool
    with pytest.raises(errors.ClientError) as info:
        wrong.batches.list()
    assert info.value.code == 400
    assert "API key not valid" in (info.value.message or "")
    assert raw(srv, "GET", "/v1beta/batches", headers={}).status_code == 403
    assert raw(srv, "GET", "/v1beta/batches?key=s3cret", headers={}).status_code == 200
    good = make_client(srv, key="s3cret")
    up = good.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "jsonl"})
    assert up.name
    assert raw(srv, "GET", "/_emulator/stats", headers={}).status_code == 200


def test_any_key_accepted_by_default(emulator: EmulatorServer) -> None:
    """Without --api-key any non-empty key works, and an empty one does not."""
    whatever = make_client(emulator, key="whatever")
    assert whatever.batches.list() is not None
    resp = raw(emulator, "GET", "/v1beta/batches", headers={"x-goog-api-key": ""})
    assert resp.status_code == 403
    assert resp.json()["error"]["status"] == "PERMISSION_DENIED"


def test_control_api_over_http(emulator: EmulatorServer) -> None:
    """stats, config, clock and reset over HTTP, as tests in other processes use them."""
    client = make_client(emulator)
    client.batches.create(model=MODEL, src=ONE, config={"display_name": "ctl"})  # type: ignore[arg-type]
    stats = raw(emulator, "GET", "/_emulator/stats", headers={}).json()
    assert stats["batches"]["created_total"] == 1
    assert stats["batches"]["by_display_name"] == {"ctl": 1}
    assert sum(stats["batches"]["by_state"].values()) == 1
    assert stats["files"]["count"] == 0
    changed = raw(
        emulator, "POST", "/_emulator/config", json={"job_failure_rate": 0.25}, headers={}
    )
    assert changed.status_code == 200
    assert changed.json()["job_failure_rate"] == 0.25
    assert emulator.config.job_failure_rate == 0.25
    bad = raw(emulator, "POST", "/_emulator/config", json={"no_such_knob": 1}, headers={})
    assert bad.status_code == 400
    before = emulator.now()
    clock = raw(emulator, "POST", "/_emulator/clock/advance", json={"seconds": 3600}, headers={})
    assert clock.json()["offset_s"] == 3600
    assert emulator.now() - before >= 3600
    assert raw(emulator, "POST", "/_emulator/reset", headers={}).status_code == 200
    assert list(client.batches.list()) == []


def test_errors_have_google_shape(emulator: EmulatorServer) -> None:
    """Unknown paths and bad bodies answer {"error": {"code", "message", "status"}}."""
    for method, path, body in [
        ("GET", "/v1beta/nothing/here", None),
        ("POST", f"/v1beta/models/{MODEL}:batchGenerateContent", {"batch": {}}),
        ("POST", f"/v1beta/models/{MODEL}:batchGenerateContent", {"nope": 1}),
        ("GET", "/v1beta/batches/unknown", None),
    ]:
        resp = raw(emulator, method, path, json=body)
        err = resp.json()["error"]
        assert resp.status_code == err["code"]
        assert resp.status_code in (400, 404)
        assert err["message"]
        assert err["status"] in ("INVALID_ARGUMENT", "NOT_FOUND")


def test_per_request_delay_and_running_time(make_emulator: Callable[..., EmulatorServer]) -> None:
    """RUNNING lasts processing_delay_s + per_request_delay_s x requests."""
    srv = make_emulator(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=10)
    client = make_client(srv)
    job = client.batches.create(model=MODEL, src=[{"contents": str(i)} for i in range(3)])  # type: ignore[misc]
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_RUNNING
    srv.advance_clock(28)
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_RUNNING
    srv.advance_clock(3)
    assert client.batches.get(name=job.name or "").state == JS.JOB_STATE_SUCCEEDED


def test_file_ttl_knob(make_emulator: Callable[..., EmulatorServer]) -> None:
    """file_ttl_s sets the retention and the File's expirationTime."""
    srv = make_emulator(file_ttl_s=60)
    client = make_client(srv)
    up = client.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "jsonl"})
    assert up.expiration_time is not None
    assert up.create_time is not None
    assert round((up.expiration_time - up.create_time).total_seconds()) == 60
    srv.advance_clock(61)
    with pytest.raises(errors.ClientError) as info:
        client.files.get(name=up.name or "")
    assert info.value.code == 403


def test_storage_dir_holds_the_bytes(
    make_emulator: Callable[..., EmulatorServer], tmp_path: Path
) -> None:
    """With storage_dir, file bytes land on disk there (not in memory)."""
    root = tmp_path / "store"
    srv = make_emulator(storage_dir=str(root))
    client = make_client(srv)
    up = client.files.upload(file=io.BytesIO(b"hello-bytes\n"), config={"mime_type": "jsonl"})
    stored = root / "files" / (up.name or "").removeprefix("files/")
    assert stored.read_bytes() == b"hello-bytes\n"


def test_custom_trigger_strings(make_emulator: Callable[..., EmulatorServer]) -> None:
    """The trigger texts are knobs too."""
    srv = make_emulator(request_fail_trigger="BOOM", job_fail_trigger="kaboom")
    client = make_client(srv)
    job = client.batches.create(
        model=MODEL, src=[{"contents": "BOOM_503"}, {"contents": "EMULATOR_FAIL"}]
    )  # type: ignore[list-item]
    done = wait_done(client, job.name or "")
    assert done.dest is not None
    assert done.dest.inlined_responses is not None
    first, second = done.dest.inlined_responses
    assert first.error is not None
    assert first.error.code == 503
    assert second.error is None
    failing = client.batches.create(model=MODEL, src=ONE, config={"display_name": "kaboom-1"})  # type: ignore[arg-type]
    assert wait_done(client, failing.name or "").state == JS.JOB_STATE_FAILED


def test_download_bytes_per_s_paces_a_results_file(
    make_emulator: Callable[..., EmulatorServer],
) -> None:
    """A ~600 KB results file at 400 KB/s takes at least ~1.5 s to come in, and comes in
    whole and unchanged (the pacing only spaces the pieces)."""
    import json

    srv = make_emulator(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0)
    client = make_client(srv)
    line = {"key": "0", "request": {"contents": [{"parts": [{"text": "EMULATOR_BIG_600000"}]}]}}
    up = client.files.upload(
        file=io.BytesIO(json.dumps(line).encode() + b"\n"), config={"mime_type": "jsonl"}
    )
    done = wait_done(client, client.batches.create(model=MODEL, src=up.name or "").name or "")
    assert done.dest is not None
    name = done.dest.file_name or ""
    fast = client.files.download(file=name)
    srv.update_config(download_bytes_per_s=400_000)
    started = time.monotonic()
    got: list[bytes] = []
    worker = threading.Thread(target=lambda: got.append(client.files.download(file=name)))
    worker.start()
    try:  # in flight while its body is sent, not only while it is looked up
        wait_until(
            lambda: srv.stats()["in_flight"] == {"files.download": 1}, 5, "download in flight"
        )
    finally:
        worker.join(timeout=30)
    [slow] = got
    assert time.monotonic() - started >= 0.75 * len(slow) / 400_000
    # The client has every byte a moment before the server's handler returns.
    wait_until(lambda: srv.stats()["in_flight"] == {}, 5, "download no longer in flight")
    assert slow == fast
    assert len(slow) > 600_000
