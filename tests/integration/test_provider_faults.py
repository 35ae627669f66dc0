"""Provider faults against the real broker and the emulator over HTTP: every promise kept."""

from __future__ import annotations

from collections import Counter

import pytest
from sidecar_harness import Topics, collect, emulator_stats, sidecar_thread

from connector.client import RequestPublisher
from connector.core.records import ResultStatus
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
