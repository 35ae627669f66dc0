"""The producer side: results and dead letters, encoded and keyed as the contract says."""

from __future__ import annotations

import structlog

from connector.codec import Codec
from connector.config import Settings
from connector.jobs import Stats
from connector.kafka_io import Producer, Record, Sent
from connector.outcomes import dead_letter_headers, result_headers
from connector.records import ResultEvent, ResultStatus

log = structlog.get_logger("connector")


class Sink:
    """Sends results (keyed by the request's Kafka key) and dead letters (the original record)."""

    def __init__(self, settings: Settings, producer: Producer, codec: Codec, stats: Stats) -> None:
        self._s = settings
        self._producer = producer
        self._codec = codec
        self._stats = stats

    def result(self, kafka_key: bytes | None, result: ResultEvent) -> Sent:
        if result.status is ResultStatus.OK:
            self._stats.results_ok += 1
        else:
            self._stats.results_error += 1
        key = kafka_key if kafka_key is not None else (result.request_id.encode() or None)
        return self._producer.send(
            self._s.result_topic,
            self._codec.encode_result(result),
            key=key,
            headers=result_headers(result, self._s.request_topic),
        )

    def dead_letter(self, rec: Record, stage: str, exc: BaseException) -> Sent:
        self._stats.dead_lettered += 1
        log.warning(
            "dead-lettered request",
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            stage=stage,
            reason=str(exc),
        )
        headers = dead_letter_headers(
            rec.headers, rec.topic, rec.partition, rec.offset, stage, exc, self._s.group_id
        )
        return self._producer.send(self._s.dlq_topic, rec.value, key=rec.key, headers=headers)
