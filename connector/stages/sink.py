"""The producer side: results and dead letters, encoded and keyed as the contract says."""

from __future__ import annotations

from dataclasses import replace

import structlog

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.formats import Format, ResultEncoder
from connector.core.observe import Observer
from connector.core.partitions import Stats
from connector.core.ports import ProducerPort, SendHandle
from connector.core.pricing import load_price_table
from connector.core.records import Record, ResultEvent, ResultStatus
from connector.core.results import dead_letter_headers, result_headers
from connector.redact import redact

log = structlog.get_logger("connector")


class Sink:
    """Sends results (keyed by the request's Kafka key) and dead letters (the original record)."""

    def __init__(
        self,
        settings: Settings,
        producer: ProducerPort,
        codec: Codec,
        stats: Stats,
        encoder: ResultEncoder | None = None,
        obs: Observer | None = None,
    ) -> None:
        self._s = settings
        self._producer = producer
        self._codec = codec
        self._stats = stats
        self._encode = (encoder or ResultEncoder(Format.SINGLE_OBJECT, codec)).encode
        self._prices = load_price_table(settings.price_table)
        self._obs = obs or Observer()

    def result(self, kafka_key: bytes | None, result: ResultEvent) -> SendHandle:
        if result.usage is not None and result.cost_usd is None:
            result = replace(result, cost_usd=self._prices.batch_usd(result.model, result.usage))
        if result.error is not None:  # provider and transport messages may quote URLs
            result = replace(
                result, error=replace(result.error, message=redact(result.error.message))
            )
        self._obs.result(result)
        if result.status is ResultStatus.OK:
            self._stats.results_ok += 1
        else:
            self._stats.results_error += 1
        key = kafka_key if kafka_key is not None else (result.request_id.encode() or None)
        return self._producer.send(
            self._s.result_topic,
            self._encode(result),
            key=key,
            headers=result_headers(result, self._s.request_topic),
        )

    def dead_letter(self, rec: Record, stage: str, exc: BaseException) -> SendHandle:
        self._stats.dead_lettered += 1
        self._obs.dead_letter(stage)
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
