"""Fair baselines: what any at-least-once consumer of this contract must do, on each client.

The bare rows of run.py ask for less than the contract requires (a constant value to an
explicit partition, no headers, no decoding, one flush and one commit at the very end).
These ask for exactly what the sidecar must do per request, with nothing of its own:

- contract pipe: consume → decode + validate → build and encode a result → keyed send with
  the four result headers → flush → commit, per poll (at-least-once: a commit covers only
  acked results);
- contract produce: build, encode and send N keyed results with headers, then flush;
- a Quix Streams application (librdkafka underneath), the peer a Python team would build
  on: the requests as JSON in, one JSON result per request out, at-least-once.

Each returns seconds (first record → all done); nothing asserts.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from common import MAX_REQUEST_BYTES, TYPICAL_RESPONSE, typical_event
from kafka import KafkaConsumer, KafkaProducer, OffsetAndMetadata

from connector.adapters.kafka import PRODUCER_CONFIG
from connector.core.codec import Codec
from connector.core.records import RequestEvent, ResultEvent, ResultStatus, TokenUsage
from connector.core.results import result_headers
from connector.core.validation import validate_request

CLIENTS = ("kafka-python", "confluent-kafka")
RESPONSE_JSON = orjson.dumps(TYPICAL_RESPONSE).decode()
USAGE = TokenUsage(120, 14, 134)
JOB = "batches/bench123"


def contract_result(ev: RequestEvent, partition: int, offset: int) -> ResultEvent:
    """The result the sidecar would send for `ev` (an OK result with usage and a cost)."""
    return ResultEvent(
        request_id=ev.request_id,
        status=ResultStatus.OK,
        model=ev.model,
        kind=ev.kind,
        response_json=RESPONSE_JSON,
        metadata=ev.metadata,
        batch_job=JOB,
        usage=USAGE,
        cost_usd=0.0000123,
        request_created_ms=ev.created_ms,
        completed_ms=ev.created_ms + 1000,
        source_partition=partition,
        source_offset=offset,
    )


def rd_producer_config(bootstrap: str) -> dict[str, Any]:
    """The confluent-kafka producer as the sidecar's librdkafka adapter configures it."""
    from connector.adapters.rdkafka import producer_config  # noqa: PLC0415  # optional extra

    return producer_config(bootstrap, {})


def contract_pipe(bootstrap: str, topic: str, out: str, n: int, client: str) -> float:
    """consume → decode + validate → encode → keyed send with headers → flush → commit, per
    poll. Returns first record → N committed (seconds)."""
    if client == "confluent-kafka":
        return _rd_pipe(bootstrap, topic, out, n)
    codec = Codec()
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), **PRODUCER_CONFIG)
    c = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-contract-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    try:
        if not c.partitions_for_topic(topic):
            raise RuntimeError(f"no metadata for {topic}")
        c.subscribe([topic])
        first: float | None = None
        got = 0
        deadline = time.monotonic() + 600
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"contract pipe read {got} of {n} records")
            batches = c.poll(timeout_ms=1000, max_records=500)
            if not batches:
                continue
            if first is None:
                first = time.perf_counter()
            offsets = {}
            for tp, recs in batches.items():
                for r in recs:
                    ev = codec.decode_request(r.value)
                    validate_request(ev, MAX_REQUEST_BYTES)
                    res = contract_result(ev, r.partition, r.offset)
                    producer.send(
                        out,
                        value=codec.encode_result(res),
                        key=r.key,
                        headers=result_headers(res, topic),
                    )
                got += len(recs)
                offsets[tp] = OffsetAndMetadata(recs[-1].offset + 1, "", -1)
            producer.flush(timeout=600)
            c.commit(offsets)
        assert first is not None
        return time.perf_counter() - first
    finally:
        c.close()
        producer.close()


def _rd_pipe(bootstrap: str, topic: str, out: str, n: int) -> float:
    from confluent_kafka import Consumer, Producer  # noqa: PLC0415  # optional extra
    from confluent_kafka import TopicPartition as RdTopicPartition  # noqa: PLC0415

    codec = Codec()
    producer = Producer(rd_producer_config(bootstrap))
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-contract-rd-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    failed: list[Any] = []

    def acked(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err)

    try:
        c.subscribe([topic])
        first: float | None = None
        got = 0
        deadline = time.monotonic() + 600
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"contract pipe read {got} of {n} records")
            msgs = c.consume(num_messages=500, timeout=1.0)
            if not msgs:
                continue
            if first is None:
                first = time.perf_counter()
            offsets: dict[int, int] = {}
            for m in msgs:
                if m.error() is not None:
                    raise RuntimeError(f"consume failed: {m.error()}")
                ev = codec.decode_request(m.value())
                validate_request(ev, MAX_REQUEST_BYTES)
                res = contract_result(ev, m.partition(), m.offset())
                producer.produce(
                    out,
                    codec.encode_result(res),
                    m.key(),
                    headers=result_headers(res, topic),
                    on_delivery=acked,
                )
                offsets[m.partition()] = m.offset() + 1
            got += len(msgs)
            if producer.flush(600) or failed:
                raise RuntimeError(f"contract pipe: produce failed {failed[:1]}")
            c.commit(
                offsets=[RdTopicPartition(topic, p, o) for p, o in offsets.items()],
                asynchronous=False,
            )
        assert first is not None
        return time.perf_counter() - first
    finally:
        c.close()


def contract_produce(bootstrap: str, topic: str, n: int, client: str, repeat: int = 2) -> float:
    """N results built, encoded and sent keyed with the result headers, flushed; best of
    `repeat` (seconds)."""
    codec = Codec()
    events = [typical_event(i) for i in range(1000)]
    best = float("inf")
    for _ in range(repeat):
        send, flush, close = _producer(bootstrap, client)
        try:
            send(topic, b"warm-up", None, [])
            flush()
            t0 = time.perf_counter()
            for i in range(n):
                ev = events[i % 1000]
                res = contract_result(ev, 0, i)
                send(
                    topic,
                    codec.encode_result(res),
                    ev.request_id.encode(),
                    result_headers(res, "bench.requests"),
                )
            flush()
            best = min(best, time.perf_counter() - t0)
        finally:
            close()
    return best


Send = Callable[[str, bytes, bytes | None, list[tuple[str, bytes]]], None]


def _producer(bootstrap: str, client: str) -> tuple[Send, Callable[[], None], Callable[[], None]]:
    if client == "confluent-kafka":
        from confluent_kafka import Producer  # noqa: PLC0415  # optional extra

        p = Producer(rd_producer_config(bootstrap))
        failed: list[Any] = []

        def acked(err: Any, _msg: Any) -> None:
            if err is not None:
                failed.append(err)

        def rd_send(topic: str, value: bytes, key: bytes | None, headers: Any) -> None:
            while True:
                try:
                    p.produce(topic, value, key, headers=headers, on_delivery=acked)
                    return
                except BufferError:  # the local queue is full: serve acks, then retry
                    p.poll(0.05)

        def rd_flush() -> None:
            if p.flush(600) or failed:
                raise RuntimeError(f"contract produce failed: {failed[:1]}")

        return rd_send, rd_flush, lambda: None
    kp = KafkaProducer(bootstrap_servers=bootstrap.split(","), **PRODUCER_CONFIG)

    def kp_send(topic: str, value: bytes, key: bytes | None, headers: Any) -> None:
        kp.send(topic, value=value, key=key, headers=headers)

    return kp_send, lambda: kp.flush(timeout=600), kp.close


def publish_json_requests(bootstrap: str, topic: str, partitions: int, n: int) -> None:
    """The same N typical requests as JSON objects (what a Quix Streams app would consume)."""
    p = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=256 * 1024, acks=1
    )
    try:
        for i in range(n):
            ev = typical_event(i)
            body = {
                "request_id": ev.request_id,
                "model": ev.model,
                "kind": ev.kind.value,
                "body": ev.body,
                "metadata": ev.metadata,
                "created_ms": ev.created_ms,
            }
            p.send(topic, value=orjson.dumps(body), key=ev.request_id.encode(),
                   partition=i % partitions)  # fmt: skip
        p.flush(timeout=600)
    finally:
        p.close()


def quix_app(bootstrap: str, topic: str, out: str, n: int, end_total: Callable[[], int]) -> float:
    """A Quix Streams application: JSON requests in, one JSON result per request out,
    at-least-once (its default guarantee: commits after the producer is flushed).

    Returns first record → N results in `out` (seconds, `end_total()` polled).
    """
    from quixstreams import Application  # noqa: PLC0415  # bench extra

    app = Application(
        broker_address=bootstrap,
        consumer_group=f"bench-quix-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        processing_guarantee="at-least-once",
        loglevel=None,
    )
    src = app.topic(topic, value_deserializer="json")
    dst = app.topic(out, value_serializer="json")
    first: list[float] = []

    def answer(req: dict[str, Any]) -> dict[str, Any]:
        if not first:
            first.append(time.perf_counter())
        if not isinstance(req.get("request_id"), str) or not isinstance(req.get("body"), str):
            raise ValueError("not a request")
        orjson.loads(req["body"])  # the body must be JSON, as the sidecar validates it
        return {
            "request_id": req["request_id"],
            "status": "OK",
            "model": req["model"],
            "kind": req["kind"],
            "response_json": RESPONSE_JSON,
            "metadata": req["metadata"],
            "batch_job": JOB,
            "usage": {"prompt_tokens": 120, "candidates_tokens": 14, "total_tokens": 134},
            "request_created_ms": req["created_ms"],
            "completed_ms": req["created_ms"] + 1000,
        }

    app.dataframe(src).apply(answer).to_topic(dst)
    done: list[float] = []
    failed: list[BaseException] = []

    def watch() -> None:
        """Stops the app once every result is in (its `run` must own the main thread: it
        installs signal handlers)."""
        deadline = time.monotonic() + 600
        try:
            while end_total() < n:
                if time.monotonic() > deadline:
                    raise TimeoutError("quix app did not produce all results")
                time.sleep(0.02)  # pacing: the end-offset check
            done.append(time.perf_counter())
        except BaseException as exc:
            failed.append(exc)
        finally:
            app.stop()

    watcher = threading.Thread(target=watch, name="quix-watch", daemon=True)
    watcher.start()
    app.run()
    watcher.join(timeout=60)
    if failed or not done or not first:
        raise RuntimeError(f"quix app failed: {failed[:1]}")
    return done[0] - first[0]
