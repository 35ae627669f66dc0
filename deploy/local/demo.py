"""The main job on embedded defaults: broker + emulator + sidecar + sample traffic.

Starts a local Kafka broker and the Gemini Batch API emulator, runs `connector run`
against them (pointed at the emulator explicitly), publishes sample requests and
prints each result as it arrives, then stops everything it started.

    python deploy/local/demo.py [--requests N] [--keep-logs]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402
import kafka_local  # noqa: E402
import orjson  # noqa: E402
from kafka import KafkaConsumer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from rich.console import Console  # noqa: E402

from connector import statuscli  # noqa: E402
from connector.adapters.gemini import Gemini  # noqa: E402
from connector.client import RequestPublisher, ResultReader  # noqa: E402
from connector.config import Settings  # noqa: E402
from connector.core.records import Kind, ResultEvent, ResultStatus  # noqa: E402
from connector.emulator import EmulatorConfig, EmulatorServer  # noqa: E402

REQUESTS = "demo.llm.requests"
RESULTS = "demo.llm.results"
DLQ = "demo.llm.requests.dlq"


def prompt(text: str, **extra: object) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **extra}


def publish_samples(pub: RequestPublisher, bulk: int) -> tuple[set[str], int]:
    """Sample traffic; returns the request ids that must get a result and the DLQ-only count."""
    ids: set[str] = set()

    def send(rid: str, model: str, body: dict[str, object], **kw: object) -> None:
        pub.publish(rid, model, body, **kw)  # type: ignore[arg-type]
        ids.add(rid)

    questions = ["Why is the sky blue?", "Tell me a one-sentence joke.", "What is Kafka?"]
    for i, q in enumerate(questions):
        send(f"flash-{i}", "gemini-2.5-flash", prompt(q), metadata={"team": "search"})
    send(
        "pro-0",
        "gemini-2.5-pro",
        prompt(
            "Write a short poem about a cat.",
            systemInstruction={"parts": [{"text": "You are a cat. Your name is Neko."}]},
        ),
    )
    send(
        "recipes-0",
        "gemini-2.5-flash",
        prompt(
            "List a few popular cookie recipes.",
            generationConfig={
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "ARRAY",
                    "items": {
                        "type": "OBJECT",
                        "properties": {
                            "recipe_name": {"type": "STRING"},
                            "ingredients": {"type": "ARRAY", "items": {"type": "STRING"}},
                        },
                        "required": ["recipe_name"],
                    },
                },
            },
        ),
        priority=5,
    )
    for i in range(3):
        send(
            f"embed-{i}",
            "gemini-embedding-001",
            {"content": {"parts": [{"text": f"document {i}"}]}, "outputDimensionality": 8},
            kind=Kind.EMBED,
        )
    # One batch too big for an inline job: it goes through an uploaded JSONL file.
    for i in range(bulk):
        send(
            f"bulk-{i}",
            "gemini-2.5-flash",
            prompt(f"Summarise item {i}: " + "lorem ipsum " * 60),
            group="bulk",
        )
    # The emulator fails these requests inside a successful job: error results, job unharmed.
    send("fails-0", "gemini-2.5-flash", prompt("EMULATOR_FAIL this one, please"))
    # Invalid requests: an error result plus the original record in the dead-letter topic.
    send("invalid-0", "gemini-2.5-flash", {"contents": "not a list"})
    send("invalid-1", "no such model!", prompt("hi"))
    # Undecodable bytes: dead-letter only (there is no request id to answer).
    pub.publish_raw(b"\x00 definitely not an avro record", key=b"garbage")
    pub.flush()
    return ids, 1


def describe(r: ResultEvent) -> str:
    if r.status is ResultStatus.OK:
        body = orjson.loads(r.response_json or "{}")
        if "embedding" in body:
            values = body["embedding"].get("values", [])
            detail = f"embedding[{len(values)}] {[round(v, 3) for v in values[:3]]}..."
        else:
            parts = body.get("candidates", [{}])[0].get("content", {}).get("parts", [{}])
            detail = repr((parts[0].get("text") or "")[:70])
        tokens = r.usage.total_tokens if r.usage else 0
        return f"OK    {r.request_id:<12} {r.model:<22} {r.batch_job} tokens={tokens} {detail}"
    e = r.error
    assert e is not None
    return f"ERROR {r.request_id:<12} {r.model:<22} {e.code} {e.status}: {e.message[:80]}"


def show_dead_letters(bootstrap: str, expected: int, timeout_s: float = 20.0) -> None:
    """Print the dead-letter records with their Kafka Connect-style provenance headers."""
    consumer = KafkaConsumer(DLQ, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    records = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(r for rs in consumer.poll(500).values() for r in rs)
    finally:
        consumer.close()
    print(f"== dead-letter topic {DLQ}: {len(records)} records (originals, unchanged)")
    for r in records:
        h = {k: v.decode(errors="replace") for k, v in r.headers}
        where = f"{h.get('__connect.errors.topic')}/{h.get('__connect.errors.partition')}"
        where += f"@{h.get('__connect.errors.offset')}"
        stage = h.get("__connect.errors.stage")
        message = h.get("__connect.errors.exception.message", "")[:70]
        print(f"   key={r.key!r:<14} {where} stage={stage}: {message}")


def show_jobs(bootstrap: str, emulator_url: str, group: str) -> None:
    """The `connector status --gemini` table: in-flight jobs with the provider's progress."""
    s = Settings(
        bootstrap_servers=bootstrap,
        group_id=group,
        gemini_base_url=emulator_url,
        request_topic=REQUESTS,
    )
    gemini = Gemini("emulator", emulator_url)
    try:
        jobs = statuscli.snapshot(s, gemini)
    finally:
        gemini.close()
    Console().print(statuscli.table(jobs, int(time.time() * 1000), bars=True))


def show_cost(health_url: str) -> None:
    """Estimated spend at the batch price and the saving, from the sidecar's /metrics."""
    text = httpx2.get(health_url + "/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    cost = totals.get("gemini_batch_connector_estimated_cost_usd_total", 0.0)
    saved = totals.get("gemini_batch_connector_estimated_savings_usd_total", 0.0)
    tokens = totals.get("gemini_batch_connector_tokens_total", 0.0)
    print(
        f"== estimated cost at the batch price: ${cost:.6f} for {tokens:.0f} tokens; "
        f"saved ${saved:.6f} against the interactive price (prices: connector/data/prices.json)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bulk", type=int, default=40, help="requests in the file-sized batch")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()

    run_dir = ROOT / ".run" / "demo"
    # A fresh broker every time: old results must never pass for this run's answers.
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    print("== starting a local Kafka broker (jars from Maven Central, cached after the first run)")
    broker = kafka_local.LocalKafka(run_dir / "kafka", port=kafka_local.free_port())
    broker.start()
    sidecar: subprocess.Popen[bytes] | None = None
    emulator = EmulatorServer(EmulatorConfig(queue_delay_s=1.0, processing_delay_s=2.0), port=0)
    try:
        emulator.start()
        print(f"== broker {broker.bootstrap}; Gemini Batch API emulator {emulator.base_url}")
        log_path = run_dir / "sidecar.log"
        health_port = kafka_local.free_port()
        health_url = f"http://127.0.0.1:{health_port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CONNECTOR_", "GEMINI_", "GOOGLE_"))
        }
        env.update(
            {
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
                "CONNECTOR_REQUEST_TOPIC": REQUESTS,
                "CONNECTOR_RESULT_TOPIC": RESULTS,
                "CONNECTOR_DLQ_TOPIC": DLQ,
                "CONNECTOR_GROUP_ID": "demo-sidecar",
                # A fresh broker has no topics: the sidecar creates its three (it refuses
                # to start on a missing topic unless asked to create it).
                "CONNECTOR_CREATE_TOPICS": "true",
                "CONNECTOR_TOPIC_PARTITIONS": "1",
                # Explicit: the sidecar never falls back to an emulator on its own.
                "CONNECTOR_GEMINI_BASE_URL": emulator.base_url,
                "CONNECTOR_BATCH_MAX_WAIT_S": "2",
                "CONNECTOR_POLL_INITIAL_S": "1",
                "CONNECTOR_POLL_MAX_S": "2",
                # Lowered from 19 MB so the demo's bulk batch shows the file path.
                "CONNECTOR_BATCH_INLINE_MAX_BYTES": "20000",
                "CONNECTOR_HEALTH_PORT": str(health_port),
                "CONNECTOR_HEALTH_HOST": "127.0.0.1",
                "PYTHONPATH": str(ROOT),
            }
        )
        sidecar = subprocess.Popen(
            [sys.executable, "-m", "connector", "run"],
            env=env,
            stdout=log_path.open("wb"),
            stderr=subprocess.STDOUT,
        )
        print(f"== sidecar running (pid {sidecar.pid}, log {log_path.relative_to(ROOT)})")
        pub = RequestPublisher(broker.bootstrap, REQUESTS)
        reader = ResultReader(broker.bootstrap, RESULTS)
        try:
            expected, _ = publish_samples(pub, args.bulk)
            print(f"== published {len(expected)} requests (+1 undecodable record); results:")
            seen: dict[str, ResultEvent] = {}
            deadline = time.monotonic() + args.timeout
            shown_jobs = False
            while not expected <= set(seen) and time.monotonic() < deadline:
                if not shown_jobs and len(seen) >= 3:
                    shown_jobs = True
                    print("== `connector status --gemini` while jobs run:")
                    show_jobs(broker.bootstrap, emulator.base_url, "demo-sidecar")
                if sidecar.poll() is not None:
                    print(f"!! sidecar exited with {sidecar.returncode}; see {log_path}")
                    return 1
                for _, r in reader.poll(0.5):
                    if r.request_id in seen:
                        continue
                    seen[r.request_id] = r
                    if not r.request_id.startswith("bulk-") or r.request_id == "bulk-0":
                        print(
                            "   "
                            + describe(r)
                            + (
                                f"  (+{args.bulk - 1} more bulk results)"
                                if r.request_id == "bulk-0"
                                else ""
                            )
                        )
        finally:
            pub.close()
            reader.close()
        missing = expected - set(seen)
        ok = sum(r.status is ResultStatus.OK for r in seen.values())
        jobs = emulator.stats()["batches"]["created_total"]
        print(
            f"== {len(seen)}/{len(expected)} requests answered: {ok} OK, {len(seen) - ok} errors; "
            f"{jobs} batch jobs created"
        )
        show_dead_letters(broker.bootstrap, expected=3)
        show_cost(health_url)
        if missing:
            print(f"!! no result within {args.timeout:.0f}s for {sorted(missing)[:10]}")
            return 1
        return 0
    finally:
        if sidecar is not None and sidecar.poll() is None:
            sidecar.send_signal(signal.SIGTERM)
            try:
                sidecar.wait(timeout=30)
            except subprocess.TimeoutExpired:
                sidecar.kill()
        emulator.stop()
        broker.stop()
        print("== stopped sidecar, emulator and broker")


if __name__ == "__main__":
    sys.exit(main())
