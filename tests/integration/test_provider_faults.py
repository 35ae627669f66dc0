"""Provider faults against the real broker and the emulator over HTTP: every promise kept."""

from __future__ import annotations

import time
from collections import Counter

import pytest
from sidecar_harness import Topics, collect, emulator_stats, sidecar_thread
from test_sidecar_crashes import crashed_entry, seed_crashed_owner

from connector.client import RequestPublisher
from connector.core.records import EntryState, ResultStatus
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def publish(pub: RequestPublisher, prefix: str, n: int, text: str = "") -> set[str]:
    ids = {f"{prefix}-{i}" for i in range(n)}
    for i, rid in enumerate(sorted(ids)):
        pub.publish(rid, "gemini-2.5-flash", prompt(text or rid), partition=i % 2)
    pub.flush()
    return ids


def assert_one_job_per_name(base_url: str) -> Counter[str]:
    created = Counter(emulator_stats(base_url)["batches"]["by_display_name"])
    assert created, "no job was created at all"
    assert max(created.values()) == 1, f"jobs created twice: {created}"
    return created


@pytest.mark.parametrize(
    "fault",
    [
        {"create_reply_lost_rate": 1.0},
        {"create_land_delay_s": 3.0, "create_late_rate": 1.0},
    ],
    ids=["reply-lost", "lands-late"],
)
def test_unclear_creates_make_exactly_one_job_per_display_name(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    fault: dict[str, float],
) -> None:
    """Every create fails unclearly (503 after the job was made, or 504 and it lands 3 s later).

    The lookup waits one HTTP timeout (4 s) and adopts the job; the input file uploaded for it
    is reused, never uploaded again, and every request is answered OK once.
    """
    emulator.update_config(**fault)
    ids = publish(publisher, "unclear", 6)
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, http_timeout_s=4, batch_inline_max_bytes=0
    )
    with sidecar_thread(settings) as sidecar:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
        assert sidecar.stats.jobs_created == 0
    for rid in ids:
        assert len(got.by_id[rid]) == 1
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error
    created = assert_one_job_per_name(emulator.base_url)
    stats = emulator_stats(emulator.base_url)
    assert stats["calls"]["files.upload"] == len(created)
    assert stats["files"]["uploaded"] == 0, "input files are deleted once the jobs are done"


def test_non_ascii_prompts_near_the_inline_limit_all_get_ok_results(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Cyrillic, CJK and emoji: ~20 KB of UTF-8 per partition but ~45 KB as the SDK sends it.

    Sized by the bytes sent, each batch goes through a file (or, had the estimate fallen
    short, a 400 'payload size' would send it through a file): never error results.
    """
    emulator.update_config(max_inline_request_bytes=32_000)
    texts = ["Привет, как дела? " * 55, "你好世界今天天气很好。" * 55, "😀🚀 ok " * 120]
    ids = set()
    for i in range(18):
        rid = f"intl-{i}"
        publisher.publish(rid, "gemini-2.5-flash", prompt(texts[i % 3]), partition=i % 2)
        ids.add(rid)
    publisher.flush()
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, batch_inline_max_bytes=30_000, batch_max_wait_s=2.0
    )
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error
    assert_one_job_per_name(emulator.base_url)


def test_crash_between_own_max_age_cancel_and_ledger_write_resubmits_split(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """The crash table's row 'max-age cancel and ledger write', set up exactly.

    A previous owner cancelled a job that outlived CONNECTOR_MAX_JOB_AGE_H and died before
    writing its halves. The new owner finds the job CANCELLED; the entry's age (durable in the
    ledger) shows the cancel was the sidecar's own: split and resubmitted, never 499 errors.
    """
    from google import genai
    from google.genai import types

    ids = [f"aged-{i}" for i in range(4)]
    for rid in ids:
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(base_url=emulator.base_url, api_version="v1beta"),
    )
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    entry = crashed_entry(
        topics.group, "p0-0-aged", (0, 1, 2, 3), EntryState.SUBMITTED,
        created_ms=two_hours_ago, updated_ms=two_hours_ago,
    )  # fmt: skip
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=[
            {"contents": prompt(r)["contents"], "metadata": {"key": str(i)}}
            for i, r in enumerate(ids)
        ],
        config={"display_name": entry.display_name},
    )  # fmt: skip
    assert job.name
    client.batches.cancel(name=job.name)
    seed_crashed_owner(
        kafka_bootstrap, topics, [crashed_entry(
            topics.group, "p0-0-aged", (0, 1, 2, 3), EntryState.SUBMITTED,
            created_ms=two_hours_ago, updated_ms=two_hours_ago, provider_job=job.name,
        )], committed=4,
    )  # fmt: skip
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, http_timeout_s=2, max_job_age_h=1.0
    )
    with sidecar_thread(settings) as sidecar:
        got = collect(kafka_bootstrap, topics.results, set(ids), timeout=60)
        assert sidecar.stats.jobs_resubmitted == 1
    for rid in ids:
        assert len(got.by_id[rid]) == 1
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error
        assert got.latest(rid).attempt == 1
    created = assert_one_job_per_name(emulator.base_url)
    assert set(created) == {
        entry.display_name,
        entry.display_name + "/a",
        entry.display_name + "/b",
    }


def test_finished_job_whose_results_file_expired_is_resubmitted(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """Result files expire at once (403 on download): the job is resubmitted split, not
    polled forever holding a quota slot; once files stay, every request is answered OK."""
    from waiting import wait_until

    emulator.update_config(output_file_ttl_s=0.0)
    ids = publish(publisher, "ttl", 6)
    settings = topics.settings(kafka_bootstrap, emulator.base_url, batch_inline_max_bytes=0)
    with sidecar_thread(settings) as sidecar:
        wait_until(lambda: sidecar.stats.jobs_resubmitted >= 1, timeout=30, message="resubmit")
        emulator.update_config(output_file_ttl_s=None)
        got = collect(kafka_bootstrap, topics.results, ids, timeout=60)
    for rid in ids:
        assert len(got.by_id[rid]) == 1
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error
    assert any(got.latest(rid).attempt == 1 for rid in ids)
    assert_one_job_per_name(emulator.base_url)


def test_api_key_switched_at_run_time_is_an_outage_not_error_results(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """The emulator starts refusing the sidecar's key mid-run (400 API_KEY_INVALID): no error
    results, `provider_auth_failing` in the status; accepted again, every request is OK."""
    from waiting import wait_until

    settings = topics.settings(kafka_bootstrap, emulator.base_url, batch_inline_max_bytes=0)
    with sidecar_thread(settings) as sidecar:
        wait_until(lambda: sidecar.running, timeout=30, message="sidecar running")
        emulator.update_config(api_key="rotated-key")
        ids = publish(publisher, "key", 6)
        wait_until(
            lambda: sidecar.status().get("provider_auth_failing"),
            timeout=30,
            message="auth failure reported",
        )
        assert sidecar.stats.results_error == 0, "an auth failure is never the requests' fault"
        emulator.update_config(api_key=None)
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
        wait_until(
            lambda: sidecar.status().get("provider_auth_failing") is False,
            timeout=10,
            message="auth failure cleared",
        )
    for rid in ids:
        assert len(got.by_id[rid]) == 1
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error


def test_cleanup_after_transient_errors_leaves_no_job_or_file_behind(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    """A quarter of all calls fail 500/503, deletes included: they are retried with backoff."""
    from waiting import wait_until

    emulator.update_config(transient_error_rate=0.25, seed=11)
    ids = publish(publisher, "tidy", 12)
    settings = topics.settings(
        kafka_bootstrap,
        emulator.base_url,
        http_timeout_s=2,
        batch_inline_max_bytes=0,
        batch_max_requests=2,
    )
    with sidecar_thread(settings):
        # A create that fails 5xx may have reached the server: its job is looked up (after
        # the rounded HTTP timeout and the claim's freshness window) before any new create,
        # so a run of failures takes minutes on a loaded machine; a deadline, not a target.
        got = collect(kafka_bootstrap, topics.results, ids, timeout=300)
        wait_until(
            lambda: (
                (s := emulator_stats(emulator.base_url))["files"]["count"] == 0
                and s["batches"]["live"] == 0
            ),
            timeout=180,
            message=lambda: f"everything deleted: {emulator_stats(emulator.base_url)}",
        )
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error
    assert emulator_stats(emulator.base_url)["calls"].get("faults.transient", 0) > 0
    assert_one_job_per_name(emulator.base_url)
