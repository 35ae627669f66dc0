"""A chunk of results through `Sink.results`: the same records as one `Sink.result` each,
with the partition computed by the sidecar and one ack handle per chunk."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.partitioner import partition_for
from connector.core.partitions import Stats
from connector.core.records import ErrorInfo, Kind, ResultEvent, ResultStatus, TokenUsage
from connector.core.results import Outgoing
from connector.errors import RecordTooLarge
from connector.metrics import Telemetry
from connector.stages.sink import Limits, Sink
from connector.testing import MemoryKafka, RecordingProducer

SETTINGS = Settings(gemini_base_url="http://127.0.0.1:9", api_key="k")


def _result(i: int, size: int = 10, error: bool = False) -> ResultEvent:
    return ResultEvent(
        request_id=f"r{i}",
        status=ResultStatus.ERROR if error else ResultStatus.OK,
        model="gemini-2.5-flash",
        kind=Kind.GENERATE,
        response_json=None if error else '{"x": "' + "y" * size + '"}',
        error=ErrorInfo(500, "INTERNAL", "boom https://x/?key=secret") if error else None,
        batch_job="batches/b1",
        usage=None if error else TokenUsage(100, 10, 110),
        request_created_ms=1,
        completed_ms=1001,
        source_partition=0,
        source_offset=i,
    )


def _sink(limits: Limits, telemetry: Telemetry | None = None) -> tuple[Sink, RecordingProducer]:
    producer = RecordingProducer(MemoryKafka())
    return Sink(SETTINGS, producer, Codec(), Stats(), obs=telemetry, limits=limits), producer


def test_a_chunk_sends_what_single_results_send_with_explicit_partitions() -> None:
    outgoing = [Outgoing(b"key-%d" % i, _result(i, error=i % 3 == 0)) for i in range(30)]
    chunked, p1 = _sink(Limits(result_partitions=7))
    single, p2 = _sink(Limits(result_partitions=7))
    handle = chunked.results(outgoing)
    for o in outgoing:
        single.result(o.kafka_key, o.result)
    a = [(h.key, h.value, h.headers, h.partition) for h in p1.pending]
    b = [(h.key, h.value, h.headers, h.partition) for h in p2.pending]
    assert a == b
    assert [h.partition for h in p1.pending] == [partition_for(o.kafka_key, 7) for o in outgoing]  # type: ignore[arg-type]
    assert b"secret" not in b"".join(h.value or b"" for h in p1.pending)
    chunked.flush_and_check([handle])
    assert handle.ok()
    assert chunked._stats.results_ok == 20
    assert chunked._stats.results_error == 10


def test_without_a_known_partition_count_the_client_places_results() -> None:
    sink, producer = _sink(Limits())
    sink.results([Outgoing(b"k", _result(1))])
    assert producer.pending[0].partition is None


def test_a_result_over_the_limit_becomes_an_error_result_in_the_chunk() -> None:
    sink, producer = _sink(Limits(result_bytes=2_000, result_partitions=2))
    sink.results([Outgoing(b"a", _result(1)), Outgoing(b"b", _result(2, size=5_000))])
    decoded = [Codec().decode_result(h.value or b"") for h in producer.pending]
    assert [r.status for r in decoded] == [ResultStatus.OK, ResultStatus.ERROR]
    assert decoded[1].error is not None
    assert decoded[1].error.code == 413
    assert sink._stats.results_too_large == 1


def test_a_record_the_broker_refuses_as_too_large_is_replaced_by_its_error_result() -> None:
    sink, producer = _sink(Limits(result_partitions=2))
    producer.fail_when = lambda _t, v: RecordTooLarge("too large") if len(v or b"") > 900 else None
    handle = sink.results([Outgoing(b"a", _result(1)), Outgoing(b"b", _result(2, size=1_000))])
    sink.flush_and_check([handle])
    written = [r for log in producer.kafka.logs.values() for r in log]
    statuses = sorted(Codec().decode_result(r.value or b"").status.value for r in written)
    assert statuses == ["ERROR", "OK"]


def test_chunk_metrics_equal_per_result_metrics() -> None:
    outgoing = [Outgoing(b"k%d" % i, _result(i, error=i % 4 == 0)) for i in range(40)]
    outgoing.append(Outgoing(b"m", replace(_result(99), model="models/unknown-model")))
    chunk_t = Telemetry(registry=CollectorRegistry())
    single_t = Telemetry(registry=CollectorRegistry())
    chunk_t.result_chunk([o.result for o in outgoing])
    for o in outgoing:
        single_t.result(o.result)

    def samples(t: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): round(s.value, 9)
            for m in t.registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    assert samples(chunk_t) == samples(single_t)
    assert any(k[0].startswith("gemini_batch_connector_results") for k in samples(chunk_t))


def test_results_priced_as_they_are_built_send_and_count_what_the_sink_would_price() -> None:
    """`success_results(..., price=sink.price)` sets each cost as the result is built; the
    records sent and the metrics are those of results the sink prices itself."""
    outgoing = [Outgoing(b"k%d" % i, _result(i, error=i % 4 == 0)) for i in range(40)]
    outgoing.append(Outgoing(b"m", replace(_result(99), model="models/unknown-model")))
    built_t, plain_t = (
        Telemetry(registry=CollectorRegistry()),
        Telemetry(registry=CollectorRegistry()),
    )
    built, p1 = _sink(Limits(result_partitions=3), built_t)
    plain, p2 = _sink(Limits(result_partitions=3), plain_t)
    priced = [
        Outgoing(
            o.kafka_key,
            o.result
            if o.result.usage is None
            else replace(o.result, cost_usd=built.price(o.result.model, o.result.usage)),
        )
        for o in outgoing
    ]
    assert sum(o.result.cost_usd is not None for o in priced) == 30  # not the unknown model
    built.results(priced)
    plain.results(outgoing)
    assert [h.value for h in p1.pending] == [h.value for h in p2.pending]

    def samples(t: Telemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {
            (s.name, tuple(sorted(s.labels.items()))): round(s.value, 12)
            for m in t.registry.collect()
            for s in m.samples
            if not s.name.endswith("_created")
        }

    assert samples(built_t) == samples(plain_t)
    assert any("cost" in k[0] and v > 0 for k, v in samples(built_t).items())
