"""The librdkafka backend (confluent-kafka): the same ports as `adapters.kafka`, in C.

Chosen with CONNECTOR_KAFKA_CLIENT=confluent-kafka (extra `librdkafka`). kafka-python stays
the default: pure Python, the project's base. Every class here mirrors its kafka-python
twin in `adapters.kafka` and raises the same connector exceptions; confluent-kafka types
stay in this module.

Differences that matter:
- settings come from the same CONNECTOR_KAFKA_<NAME> variables, in kafka-python's names,
  mapped to librdkafka's dotted names by `RD_NAMES` (a name with no equivalent is refused);
- rebalance callbacks run inside `consume` on the loop thread (librdkafka serves them from
  the calling thread), so events are queued exactly as kafka-python's listener does;
- the producer confirms through delivery callbacks instead of futures, and places keyed
  records with `murmur2_random`, the Java client's (and kafka-python's) partitioner;
- the transactional producer is fenced by the consumer's group metadata; an unjoined
  librdkafka consumer has an empty member id, which the broker does not check, so the
  generation guard refuses a commit on the member id.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Container, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaException,
        TopicPartition,
    )
    from confluent_kafka import KafkaError as RdError
    from confluent_kafka import Producer as RdProducer
    from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
        AdminClient,
        ConfigResource,
        NewPartitions,
        NewTopic,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "CONNECTOR_KAFKA_CLIENT=confluent-kafka needs the librdkafka extra: "
        'pip install "gemini-batch-connector[librdkafka]"'
    ) from exc

from connector.adapters.kafka import (
    DEFAULT_MAX_MESSAGE_BYTES,
    OFFSETS_TIMEOUT_S,
    PROBE_INTERVAL_S,
    PROBE_TIMEOUT_S,
    PRODUCER_FENCED_LIMIT_S,
    TRANSACTION_TIMEOUT_MS,
    _bounded,
    _Stuck,
)
from connector.adapters.kafka import Admin as _KafkaPythonAdmin
from connector.core.ports import (
    ConsumerPort,
    ProducerPort,
    SendHandle,
    TransactionalProducerPort,
)
from connector.core.records import Headers, Record
from connector.core.spans import SPAN_GAP
from connector.errors import (
    BrokerUnavailable,
    CommitFailed,
    ConfigError,
    Fenced,
    OpenTransaction,
    ProduceFailed,
    RecordTooLarge,
    TransactionInDoubt,
)

log = structlog.get_logger(__name__)

COMMON, PRODUCER, CONSUMER = "common", "producer", "consumer"

RD_NAMES: dict[str, tuple[str, str]] = {
    # kafka-python name: (librdkafka name, which clients take it)
    "client_id": ("client.id", COMMON),
    "security_protocol": ("security.protocol", COMMON),
    "sasl_mechanism": ("sasl.mechanism", COMMON),
    "sasl_plain_username": ("sasl.username", COMMON),
    "sasl_plain_password": ("sasl.password", COMMON),
    "sasl_kerberos_service_name": ("sasl.kerberos.service.name", COMMON),
    "ssl_cafile": ("ssl.ca.location", COMMON),
    "ssl_certfile": ("ssl.certificate.location", COMMON),
    "ssl_keyfile": ("ssl.key.location", COMMON),
    "ssl_password": ("ssl.key.password", COMMON),
    "ssl_crlfile": ("ssl.crl.location", COMMON),
    "ssl_check_hostname": ("ssl.endpoint.identification.algorithm", COMMON),
    "socket_timeout_ms": ("socket.timeout.ms", COMMON),
    "connections_max_idle_ms": ("connections.max.idle.ms", COMMON),
    # kafka-python's forced refresh that discovers new partitions is librdkafka's refresh
    # interval (metadata.max.age.ms there is only how long cached metadata stays valid): with
    # the other mapping, partitions added to the request topic went unread for 5 minutes.
    "metadata_max_age_ms": ("topic.metadata.refresh.interval.ms", COMMON),
    "reconnect_backoff_ms": ("reconnect.backoff.ms", COMMON),
    "reconnect_backoff_max_ms": ("reconnect.backoff.max.ms", COMMON),
    "retry_backoff_ms": ("retry.backoff.ms", COMMON),
    "receive_buffer_bytes": ("socket.receive.buffer.bytes", COMMON),
    "send_buffer_bytes": ("socket.send.buffer.bytes", COMMON),
    "request_timeout_ms": ("request.timeout.ms", PRODUCER),
    "linger_ms": ("linger.ms", PRODUCER),
    "batch_size": ("batch.size", PRODUCER),
    "compression_type": ("compression.type", PRODUCER),
    "max_request_size": ("message.max.bytes", PRODUCER),
    "delivery_timeout_ms": ("delivery.timeout.ms", PRODUCER),
    "max_in_flight_requests_per_connection": ("max.in.flight.requests.per.connection", PRODUCER),
    "transaction_timeout_ms": ("transaction.timeout.ms", PRODUCER),
    "session_timeout_ms": ("session.timeout.ms", CONSUMER),
    "heartbeat_interval_ms": ("heartbeat.interval.ms", CONSUMER),
    "max_poll_interval_ms": ("max.poll.interval.ms", CONSUMER),
    "max_partition_fetch_bytes": ("max.partition.fetch.bytes", CONSUMER),
    "fetch_max_bytes": ("fetch.max.bytes", CONSUMER),
    "fetch_min_bytes": ("fetch.min.bytes", CONSUMER),
    "fetch_max_wait_ms": ("fetch.wait.max.ms", CONSUMER),
    "group_instance_id": ("group.instance.id", CONSUMER),
    "isolation_level": ("isolation.level", CONSUMER),
}
"""CONNECTOR_KAFKA_* settings (kafka-python names) and their librdkafka equivalents."""

PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 5,
    "linger.ms": 20,
    "batch.size": 256 * 1024,
    # Java's (and kafka-python's) placement of keyed records: a key lands on the same
    # partition whichever client produced it. librdkafka's own default is crc32.
    "partitioner": "murmur2_random",
}
"""The sidecar producer's settings, as `adapters.kafka.PRODUCER_CONFIG` in librdkafka terms."""

_CLIENT_ID_PREFIX = "client.id.prefix"
"""The key `adapters.kafka.with_client_ids` adds (kept in step with its CLIENT_ID_PREFIX)."""

DEFAULT_MAX_REQUEST_SIZE = 1_048_576
"""kafka-python's max_request_size default, kept so both clients refuse the same records."""


def _value(name: str, value: Any) -> Any:
    if name == "ssl_check_hostname":
        return "https" if value else "none"
    if name in {"sasl_mechanism", "security_protocol"}:
        return str(value).upper()
    return value


def rd_config(bootstrap: str, extra: Mapping[str, Any], role: str) -> dict[str, Any]:
    """librdkafka settings for one client `role` (producer, consumer, or common for admin)
    from CONNECTOR_KAFKA_* (kafka-python names); an unmapped name is a `ConfigError`."""
    # `<group>.<replica>` (adapters.kafka.with_client_ids): librdkafka's client.id is
    # `<prefix>.<role>`, as kafka-python's clients are named, unless one is configured.
    extra = dict(extra)
    prefix = extra.pop(_CLIENT_ID_PREFIX, None)
    unknown = sorted(k for k in extra if k not in RD_NAMES)
    if unknown:
        raise ConfigError(
            f"Kafka settings {unknown} (from CONNECTOR_KAFKA_*) have no librdkafka equivalent "
            "here; see RD_NAMES in connector/adapters/rdkafka.py or use "
            "CONNECTOR_KAFKA_CLIENT=kafka-python"
        )
    cfg: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if prefix:
        cfg["client.id"] = f"{prefix}.{role}"
    for k, v in extra.items():
        name, scope = RD_NAMES[k]
        if scope in (COMMON, role):
            cfg[name] = _value(k, v)
    return cfg


def producer_max_request_size(extra: Mapping[str, Any]) -> int:
    return int(extra.get("max_request_size", DEFAULT_MAX_REQUEST_SIZE))


def producer_config(bootstrap: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """PRODUCER_CONFIG under the user's settings, idempotence and acks=all kept."""
    cfg = {**PRODUCER_CONFIG, **rd_config(bootstrap, extra, PRODUCER)}
    cfg.setdefault("message.max.bytes", producer_max_request_size(extra))
    cfg.update({"enable.idempotence": True, "acks": "all"})
    return cfg


def _error(exc: BaseException) -> Any:
    """The librdkafka error inside a KafkaException (or None)."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], RdError) else None


def _record(m: Any) -> Record:
    headers = [(k, v if v is not None else b"") for k, v in (m.headers() or [])]
    _kind, ts = m.timestamp()
    return Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(), headers, ts)


_TOO_LARGE = (RdError.MSG_SIZE_TOO_LARGE, RdError.RECORD_LIST_TOO_LARGE)


def _produce_error(err: Any) -> BaseException:
    if err.code() in _TOO_LARGE:
        return RecordTooLarge(f"record too large: {err}")
    return ProduceFailed(f"produce failed: {err}")


# -- consumer --------------------------------------------------------------------------------


CLOSE_TIMEOUT_S = 30.0
"""How long closing the group consumer may take (a LeaveGroup and the last commit)."""
RELEASE_TIMEOUT_S = 10.0
"""How long a closing consumer polls for its revocation before it closes anyway."""
WATCHDOG_MARGIN_S = 10.0
"""librdkafka's blocking calls take a timeout but do not all keep it: a synchronous offset
commit has none (confluent-kafka-python#1801), send_offsets_to_transaction can wait without
end on a coordinator request (librdkafka#5456, open) and a commit's retries are not capped.
Each runs under `_bounded`, this long past its own timeout."""


class RequestConsumer:
    """The consumer group member that reads request records; one owning thread.

    Rebalance callbacks are served inside `consume`, on the loop thread: they only queue
    events, as kafka-python's listener does.
    """

    def __init__(
        self, topic: str, group_id: str, bootstrap: str, extra: Mapping[str, Any], max_records: int
    ) -> None:
        self.topic = topic
        self.events: deque[tuple[str, set[int]]] = deque()
        self._max_records = max_records
        self._confirmed = time.monotonic()
        self._paused: set[int] = set()
        cfg = rd_config(bootstrap, extra, CONSUMER)
        cfg.update(
            {"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        )
        try:
            self._consumer = Consumer(cfg)
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka settings for librdkafka: {exc}") from exc
        self._consumer.subscribe(
            [topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def _assigned(self, consumer: Any, tps: list[Any]) -> None:
        consumer.assign(tps)
        self.events.append(("assigned", {tp.partition for tp in tps}))

    def _revoked(self, consumer: Any, tps: list[Any]) -> None:
        self._paused -= {tp.partition for tp in tps}
        self.events.append(("revoked", {tp.partition for tp in tps}))

    def _lost(self, consumer: Any, tps: list[Any]) -> None:
        self._revoked(consumer, tps)

    def poll(self, timeout_s: float) -> list[Record]:
        try:
            msgs = self._consumer.consume(self._max_records, max(0.0, timeout_s))
        except KafkaException as exc:
            raise BrokerUnavailable(f"poll failed: {exc!r}") from exc
        out: list[Record] = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(_record(m))
            elif err.fatal():
                raise BrokerUnavailable(f"poll failed: {err}")
            else:  # transient (a broker restarting): librdkafka retries by itself
                log.info("consumer error", error=str(err))
        now = time.monotonic()
        if out:
            self._confirmed = now
        elif now - self._confirmed > PROBE_INTERVAL_S:
            self._probe()
            self._confirmed = time.monotonic()
        return out

    def _probe(self) -> None:
        """An idle poll says nothing of the broker: ask it for one end offset."""
        tps = sorted(self._consumer.assignment(), key=lambda tp: tp.partition)[:1]
        if not tps:
            return
        try:
            self._consumer.get_watermark_offsets(tps[0], timeout=PROBE_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"broker not answering: {exc!r}") from exc

    def _release(self) -> None:
        """Unsubscribe and poll until the revocation is served, outside the close.

        A close that finds a revocation still to serve (a member the group expelled while it
        did not poll) calls `rd_kafka_assign` from inside the close, which can wait forever
        (librdkafka#4884), and confluent-kafka makes that call holding the GIL: the whole
        process freezes, the close's watchdog thread with it (seen in the contract suite,
        about 1 round in 15, and as CI's 90 minutes running out). Served by a poll, the same
        revocation is an ordinary one. Records polled meanwhile are dropped uncommitted: the
        partitions' next owner reads them.
        """
        self._consumer.unsubscribe()
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while self._consumer.assignment() and time.monotonic() < deadline:
            self._consumer.consume(self._max_records, 0.1)

    def rebalance_events(self) -> list[tuple[str, set[int]]]:
        events = list(self.events)
        self.events.clear()
        return events

    def commit(self, offsets: Mapping[int, int]) -> None:
        if not offsets:
            return
        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        try:
            _bounded(
                lambda: self._consumer.commit(offsets=tps, asynchronous=False),
                OFFSETS_TIMEOUT_S + WATCHDOG_MARGIN_S,
                "offset commit",
            )
        except _Stuck as exc:
            # Unknown whether it landed; the next pass commits the same offsets again.
            raise CommitFailed(f"offset commit did not complete: {exc}") from exc
        except KafkaException as exc:
            raise CommitFailed(f"offset commit refused: {exc!r}") from exc

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        """Seek to the committed offset (or the beginning) and return where each starts
        (a committed offset below the log start is returned as is, as kafka-python's does)."""
        try:
            return self._rewind(list(partitions))
        except KafkaException as exc:
            raise BrokerUnavailable(f"rewind failed: {exc!r}") from exc

    def _rewind(self, partitions: list[int]) -> dict[int, int]:
        if not partitions:
            return {}
        tps = [TopicPartition(self.topic, p) for p in partitions]
        committed = self._consumer.committed(tps, timeout=OFFSETS_TIMEOUT_S)
        starts: dict[int, int] = {}
        for tp in committed:
            begin, _end = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, tp.partition), timeout=OFFSETS_TIMEOUT_S
            )
            start = begin if tp.offset < 0 else tp.offset
            self._seek(tp.partition, max(start, begin))
            starts[tp.partition] = start
        return starts

    def _seek(self, partition: int, offset: int) -> None:
        """librdkafka refuses a seek until a new assignment's fetcher has started
        (`_STATE`): retry that for a moment, then give up as a broker problem."""
        deadline = time.monotonic() + OFFSETS_TIMEOUT_S
        while True:
            try:
                self._consumer.seek(TopicPartition(self.topic, partition, offset))
                return
            except KafkaException as exc:
                err = _error(exc)
                if err is None or err.code() != RdError._STATE or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # the fetcher starts on librdkafka's own thread

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()}

    def highwaters(self) -> dict[int, int]:
        """End offsets as the last fetch responses reported them (no request; for lag)."""
        out: dict[int, int] = {}
        for tp in self._consumer.assignment():
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if high is not None and high >= 0:
                out[tp.partition] = int(high)
        return out

    def transaction_offsets(self, offsets: Mapping[int, int]) -> tuple[object, object]:
        """Offsets for `send_offsets_to_transaction`, and the consumer's group metadata.

        The broker checks the generation only for a known member: an unjoined librdkafka
        consumer sends an empty member id, which it accepts, so refuse that here.
        """
        if not self._consumer.memberid():
            raise Fenced("not a member of the group: dropped, and not rejoined yet")
        tps = [TopicPartition(self.topic, p, o) for p, o in offsets.items()]
        return tps, self._consumer.consumer_group_metadata()

    def pause(self, partitions: Iterable[int]) -> None:
        ps = set(partitions) & self.assignment()
        if ps:
            self._consumer.pause([TopicPartition(self.topic, p) for p in ps])
            self._paused |= ps

    def resume_all(self) -> None:
        self.resume(set(self._paused))

    def resume(self, partitions: Iterable[int]) -> None:
        ps = set(partitions) & self.assignment()
        self._paused -= set(partitions)
        if ps:
            self._consumer.resume([TopicPartition(self.topic, p) for p in ps])

    def seek(self, partition: int, offset: int) -> None:
        try:
            self._seek(partition, offset)
        except KafkaException as exc:
            raise BrokerUnavailable(f"seek failed: {exc!r}") from exc

    def close(self) -> None:
        """Leave the group: the assignment is given up first (`_release`), then the close
        runs bounded. Past `CLOSE_TIMEOUT_S` it is left to finish in its thread; the group
        drops the member at its session timeout anyway, and nothing the sidecar needs waits
        on it."""
        try:
            self._release()
        except Exception as exc:  # closing must never fail the stop
            log.info("giving up the assignment before the close failed", error=str(exc))
        try:
            _bounded(self._consumer.close, CLOSE_TIMEOUT_S, "consumer close")
        except _Stuck:
            log.warning(
                "the group consumer did not close in time; left closing", seconds=CLOSE_TIMEOUT_S
            )
        except Exception as exc:  # closing must never fail the stop
            log.info("closing the group consumer failed", error=str(exc))


# -- producers -------------------------------------------------------------------------------


@dataclass(slots=True)
class Sent:
    """A pending produce, settled by its delivery callback (served in poll/flush)."""

    done: bool = False
    failed: BaseException | None = None
    offset: int = -1
    _err: Any = None
    args: tuple[Any, ...] = ()
    """What was sent (topic, value, key, headers, partition), to send it again after the
    transaction holding it aborted (`TransactionalProducer.resend`)."""

    def __call__(self, err: Any, msg: Any) -> None:
        # No call into the error here: librdkafka serves a fatal error's reports with the
        # exception flush() is about to raise already set, and any C call would then fail
        # (SystemError); it is read when asked for (`error`), after flush returned or raised.
        self.done = True
        if err is not None:
            self._err = err
        else:
            self.offset = msg.offset()

    def ok(self) -> bool:
        return self.done and self.error() is None

    def error(self) -> BaseException | None:
        if self.failed is None and self._err is not None:
            self.failed = _produce_error(self._err)
        return self.failed


class Producer:
    """One idempotent producer for results, dead letters and ledger entries."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self.max_request_size = producer_max_request_size(extra)
        self._producer = self._make(producer_config(bootstrap, extra))

    @staticmethod
    def _make(cfg: dict[str, Any]) -> Any:
        try:
            return RdProducer(cfg)
        except KafkaException as exc:
            raise ConfigError(f"invalid Kafka settings for librdkafka: {exc}") from exc

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Sent:
        sent = Sent(args=(topic, value, key, headers, partition))
        p = self._producer
        while True:
            try:
                if partition is None:
                    p.produce(topic, value, key, headers=headers, on_delivery=sent)
                else:
                    p.produce(topic, value, key, partition, headers=headers, on_delivery=sent)
                return sent
            except BufferError:  # the local queue is full: serve delivery reports, retry
                p.poll(0.05)
            except KafkaException as exc:  # refused before sending, e.g. over the size limit
                err = _error(exc)
                sent.done = True
                sent.failed = _produce_error(err) if err is not None else exc
                return sent

    def poll(self) -> None:
        """Serve delivery callbacks that are due (cheap; keeps the local queue short)."""
        self._producer.poll(0)

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None:
        if not sent:
            return
        try:
            left = self._producer.flush(timeout_s)
        except KafkaException as exc:  # a fatal error (e.g. a fenced transactional producer)
            raise self._flush_failed(exc) from exc
        except SystemError as exc:
            # confluent-kafka 2.16: a fatal error raised while flush serves the delivery
            # reports surfaces as a SystemError of the report callback, caused by it.
            if not isinstance(exc.__cause__, KafkaException):
                raise
            raise self._flush_failed(exc.__cause__) from exc
        if left:
            raise ProduceFailed(f"flush timed out with {left} records unacked")
        for s in sent:
            if not s.ok():
                raise ProduceFailed(f"produce failed: {s.error()!r}")

    def _flush_failed(self, exc: KafkaException) -> BaseException:
        return ProduceFailed(f"produce failed: {exc!r}")

    def await_partitions(self, topic: str, n: int, timeout_s: float = 30.0) -> None:
        """Wait until the producer's metadata shows `n` partitions of `topic`."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                md = self._producer.list_topics(topic, timeout=5)
                if len(md.topics[topic].partitions) >= n:
                    return
            except KafkaException as exc:
                log.info("metadata refresh failed", error=str(exc))
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"producer metadata never showed {n} partitions")
            time.sleep(0.2)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.flush(timeout_s)


class TransactionalProducer(Producer):
    """A producer with a transactional.id, bound to the consumer group by KIP-447."""

    def __init__(
        self,
        bootstrap: str,
        extra: Mapping[str, Any],
        transactional_id: str,
        timeout_s: float = 30.0,
    ) -> None:
        self._transactional_id = transactional_id
        self._timeout_s = timeout_s
        self._open = False
        self._sends = 0
        """Sends in the open transaction."""
        self._stale = False
        """Fenced (a fatal error in librdkafka): replaced by a fresh producer at next use."""
        self._fenced_at: float | None = None
        self.max_request_size = producer_max_request_size(extra)
        cfg = producer_config(bootstrap, extra)
        cfg.setdefault("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS)
        cfg["transactional.id"] = transactional_id
        self._cfg = cfg
        self._producer = self._initialised()

    def _initialised(self) -> Any:
        producer = self._make(self._cfg)
        try:
            # Fences an earlier producer with the same id and aborts its open transaction.
            self._guarded(lambda: producer.init_transactions(self._timeout_s), "init_transactions")
        except KafkaException as exc:
            raise BrokerUnavailable(f"init_transactions failed: {exc!r}") from exc
        except _Stuck as exc:
            raise BrokerUnavailable(f"init_transactions did not complete: {exc}") from exc
        return producer

    def _guarded(self, call: Callable[[], object], what: str) -> None:
        """Run a transactional call under a watchdog (`WATCHDOG_MARGIN_S`); `_Stuck` if it
        outlives it, the call left running in its thread."""
        _bounded(call, self._timeout_s + WATCHDOG_MARGIN_S, what)

    def _in_doubt(self, exc: _Stuck) -> TransactionInDoubt:
        """A commit or abort that never returned: its outcome is unknown and this producer is
        not used again (the next use makes a fresh one, whose init fences this one's epoch
        and aborts what it left open). The sidecar exits on it, as with kafka-python."""
        self._open = False
        self._sends = 0
        self._stale = True
        return TransactionInDoubt(f"transaction outcome unknown: {exc}")

    def _fresh(self) -> None:
        """A fenced producer is dead for good in librdkafka (a fatal error): the next use
        makes a new one with the same transactional.id (its init fences the old epoch), as
        the kafka-python adapter renews its producer. `BrokerUnavailable` if that fails."""
        if self._stale:
            self._producer = self._initialised()
            self._stale = False

    def _fenced(self, exc: KafkaException) -> BaseException | None:
        """This producer was fenced: it ran a transaction past transaction.timeout.ms, or
        another producer took the id. Renewed at next use; fenced twice within
        `PRODUCER_FENCED_LIMIT_S`: the id is shared, a `ConfigError`. None if `exc` is not
        a fencing of this producer."""
        err = _error(exc)
        code = err.code() if err is not None else None
        if code not in (RdError._FENCED, RdError.PRODUCER_FENCED, RdError.INVALID_PRODUCER_EPOCH):
            return None
        self._open = False
        self._sends = 0
        self._stale = True
        now = time.monotonic()
        shared = self._fenced_at is not None and now - self._fenced_at < PRODUCER_FENCED_LIMIT_S
        self._fenced_at = now
        if shared:
            return ConfigError(
                f"transactional.id {self._transactional_id!r} is used by another producer; "
                "every replica needs its own (CONNECTOR_TRANSACTIONAL_ID)"
            )
        return Fenced(f"producer fenced (transaction timed out, or the id was taken): {exc!r}")

    def _flush_failed(self, exc: KafkaException) -> BaseException:
        fenced = self._fenced(exc)
        return fenced if fenced is not None else ProduceFailed(f"flush failed: {exc!r}")

    @property
    def transactional_id(self) -> str:
        return self._transactional_id

    def begin_transaction(self) -> None:
        """Start a unit of work. Sends a failed unit left open are aborted first."""
        self._fresh()
        if self._open and self._sends:
            log.error(
                "aborting sends a failed unit of work left in the open transaction",
                sends=self._sends,
            )
            self._abort()
        try:
            self._begin()
        except KafkaException as exc:
            raise self._mapped(exc) from exc

    def resend(self, handle: SendHandle) -> Sent:
        """Send `handle`'s record again (its transaction aborted)."""
        if not isinstance(handle, Sent) or not handle.args:
            raise TypeError(f"not a send of this producer: {handle!r}")
        return self.send(*handle.args)

    def _begin(self) -> None:
        self._fresh()
        if not self._open:
            self._producer.begin_transaction()
            self._open = True

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Sent:
        try:
            self._begin()
        except KafkaException as exc:
            raise self._mapped(exc) from exc
        self._sends += 1
        return super().send(topic, value, key, headers, partition)

    def commit_transaction(
        self, sent: Sequence[SendHandle], offsets: Mapping[int, int], consumer: Any
    ) -> None:
        if not self._open and not offsets:
            return
        self._fresh()
        try:
            self._begin()
            self.flush_and_check(sent, self._timeout_s)
            producer = self._producer
            if offsets:
                tps, group = consumer.transaction_offsets(offsets)
                self._guarded(
                    lambda: producer.send_offsets_to_transaction(tps, group, self._timeout_s),
                    "send_offsets_to_transaction",
                )
            self._guarded(
                lambda: producer.commit_transaction(self._timeout_s), "commit_transaction"
            )
            self._open = False
            self._sends = 0
        except _Stuck as exc:
            raise self._in_doubt(exc) from exc
        except (Fenced, ProduceFailed) as exc:
            self._abort()
            if isinstance(exc, Fenced):
                raise
            raise ProduceFailed(f"transaction failed and was aborted: {exc!r}") from exc
        except ConfigError:
            raise
        except KafkaException as exc:
            mapped = self._mapped(exc)
            if not isinstance(mapped, ConfigError):
                self._abort()
            raise mapped from exc

    def _mapped(self, exc: KafkaException) -> BaseException:
        fenced = self._fenced(exc)
        if fenced is not None:
            return fenced
        err = _error(exc)
        code = err.code() if err is not None else None
        if code in (
            RdError.ILLEGAL_GENERATION,
            RdError.UNKNOWN_MEMBER_ID,
            RdError.REBALANCE_IN_PROGRESS,
        ):
            return Fenced(f"transaction refused, group generation is stale: {exc!r}")
        if code == RdError.FENCED_INSTANCE_ID:
            return Fenced(f"transaction refused, instance id fenced: {exc!r}")
        if code in (RdError._TIMED_OUT, RdError._TRANSPORT, RdError._ALL_BROKERS_DOWN):
            return BrokerUnavailable(f"transaction outcome unknown: {exc!r}")
        return ProduceFailed(f"transaction failed and was aborted: {exc!r}")

    def abort_transaction(self) -> None:
        self._abort()

    def close(self, timeout_s: float = 10.0) -> None:
        if not self._stale:  # a fenced producer has nothing left to deliver
            super().close(timeout_s)

    def _abort(self) -> None:
        self._sends = 0
        if not self._open or self._stale:  # a fenced producer has nothing left to abort
            self._open = False
            return
        self._open = False
        producer = self._producer
        try:
            self._guarded(lambda: producer.abort_transaction(self._timeout_s), "abort_transaction")
        except _Stuck as exc:
            raise self._in_doubt(exc) from exc
        except KafkaException as exc:
            log.warning("transaction abort failed", error=repr(exc))


# -- group-less reads ------------------------------------------------------------------------


def _reader(
    bootstrap: str, extra: Mapping[str, Any], committed: bool = False, queue_kb: int = 0
) -> Any:
    cfg = rd_config(bootstrap, extra, CONSUMER)
    if queue_kb:
        cfg["queued.max.messages.kbytes"] = queue_kb
        # A full queue postpones the next fetch by this (1 s by default): with a small queue
        # every re-read chunk would wait for it (the fan-out profile spent half its time so).
        cfg["fetch.queue.backoff.ms"] = 10
    # librdkafka wants a group id even for assign()-only use; nothing joins or commits.
    # earliest: an offset that retention deleted meanwhile resumes at the log start (what is
    # gone is absent from the read), never at the end.
    cfg.update(
        {
            "group.id": "connector-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    cfg["enable.partition.eof"] = True  # the end is seen even past transaction markers
    if committed:
        cfg["isolation.level"] = "read_committed"
    else:
        cfg.setdefault("isolation.level", "read_uncommitted")
    return Consumer(cfg)


def read_partition(
    topic: str,
    partition: int,
    bootstrap: str,
    extra: Mapping[str, Any],
    start: int | None = None,
    stop: int | None = None,
    timeout_s: float = 60.0,
    committed: bool = False,
) -> list[Record]:
    """Read [start, min(stop, end)) of one partition without a group (see
    `adapters.kafka.read_partition`); librdkafka errors become `BrokerUnavailable`."""
    try:
        return _read_partition(
            topic, partition, bootstrap, extra, start, stop, timeout_s, committed
        )
    except KafkaException as exc:
        raise BrokerUnavailable(f"reading {topic}[{partition}] failed: {exc!r}") from exc


def _read_partition(
    topic: str,
    partition: int,
    bootstrap: str,
    extra: Mapping[str, Any],
    start: int | None,
    stop: int | None,
    timeout_s: float,
    committed: bool,
) -> list[Record]:
    consumer = _reader(bootstrap, extra, committed)
    try:
        tp = TopicPartition(topic, partition)
        deadline = time.monotonic() + timeout_s
        wait = min(timeout_s, OFFSETS_TIMEOUT_S)
        # The high watermark: with read_committed, reading up to it waits out a transaction
        # a crashed producer left open (reads stop at the last stable offset until it ends),
        # so entries committed after it are not missed. A read_committed consumer's
        # watermark query answers the last stable offset instead (librdkafka), which would
        # end the read silently short of them: ask a read_uncommitted one.
        begin, end = (
            _high_watermark(tp, bootstrap, extra, wait)
            if committed
            else (consumer.get_watermark_offsets(tp, timeout=wait))
        )
        first = begin if start is None else max(start, begin)
        last = end if stop is None else min(stop, end)
        out: list[Record] = []
        if first >= last:
            return out
        consumer.assign([TopicPartition(topic, partition, first)])
        reached = first
        while reached < last:
            if time.monotonic() > deadline:
                if committed:
                    raise OpenTransaction(topic, partition, f" {first}..{last}")
                raise BrokerUnavailable(f"timed out reading {topic}[{partition}] {first}..{last}")
            for m in consumer.consume(500, 0.5):
                reached = max(reached, _reached(m))
                if m.error() is None and m.offset() < last:
                    out.append(_record(m))
        return out
    finally:
        consumer.close()


def _high_watermark(
    tp: TopicPartition, bootstrap: str, extra: Mapping[str, Any], timeout_s: float
) -> tuple[int, int]:
    """(log start, high watermark) of `tp`, whatever transactions are open there."""
    consumer = _reader(bootstrap, extra)
    try:
        begin, end = consumer.get_watermark_offsets(tp, timeout=timeout_s)
        return int(begin), int(end)
    finally:
        consumer.close()


def _reached(m: Any) -> int:
    """The offset a read has got to with message `m`: past a record, or the end of the
    partition (an EOF event, also past aborted records and transaction markers, which
    librdkafka never hands out). A fatal error raises."""
    err = m.error()
    if err is None:
        return int(m.offset()) + 1
    if err.code() == RdError._PARTITION_EOF:
        return int(m.offset())
    if err.fatal():
        raise BrokerUnavailable(f"reading {m.topic()}[{m.partition()}]: {err}")
    return -1


class PartitionReader:
    """A kept-open, group-less consumer for one request partition (see `adapters.reread`)."""

    def __init__(
        self,
        topic: str,
        partition: int,
        bootstrap: str,
        extra: Mapping[str, Any],
        stall_timeout_s: float,
        clock: Any,
        *,
        fetch_bytes: int,
    ) -> None:
        extra = dict(extra)
        extra.setdefault("max_partition_fetch_bytes", fetch_bytes)
        # librdkafka prefetches in the background (up to 64 MB by default): a sparse read
        # would fetch far past each range; keep its queue to a few fetches.
        self._consumer = _reader(bootstrap, extra, queue_kb=max(64, 4 * fetch_bytes // 1024))
        self._topic, self._partition = topic, partition
        self._stall = stall_timeout_s
        self._clock = clock
        self.last_used = clock()
        self.fetched = 0
        self.seeks = 0
        """Assignments at an offset made (for tests and the bench): one per span not read on
        from the last."""
        self._begin = self._end = -1
        """The partition's watermarks as last asked (asked again for a span past the end)."""
        self._next = -1
        """Where the consumer's queue goes on, when the last span was read to its end and
        nothing past it was taken (-1: unknown): a span starting at most `SPAN_GAP` past it
        is read on from there, without a new assignment (a delivery reads its job's offsets
        chunk after chunk), and keeps what is prefetched."""

    def continues(self, start: int) -> bool:
        """Whether a span from `start` is read on from where the last one ended (no seek)."""
        return 0 <= self._next <= start <= self._next + SPAN_GAP

    def records(
        self, spans: Iterable[tuple[int, int]], keep: Container[int] | None = None
    ) -> Iterator[Record]:
        tp = TopicPartition(self._topic, self._partition)
        self.last_used = self._clock()
        try:
            for start, stop in spans:
                if stop > self._end:
                    self._begin, self._end = self._consumer.get_watermark_offsets(
                        tp, timeout=OFFSETS_TIMEOUT_S
                    )
                first, last = max(start, self._begin), min(stop, self._end)
                if first >= last:
                    continue
                at = self._next
                if not self.continues(first):
                    self._consumer.assign([TopicPartition(self._topic, self._partition, first)])
                    self.seeks += 1
                    at = first
                self._next = -1  # unknown until the span is read to its end
                self._next = yield from self._span(at, first, last, keep)
        except KafkaException as exc:
            raise BrokerUnavailable(
                f"re-read of {self._topic}[{self._partition}] failed: {exc!r}"
            ) from exc
        finally:
            self.last_used = self._clock()

    def _span(
        self, at: int, first: int, last: int, keep: Container[int] | None
    ) -> Generator[Record, None, int]:
        """The records of [first, last), the queue being at `at` <= first; returns the
        offset the queue goes on from. Takes no more messages than the span can still hold,
        so none past it is consumed unless the partition skips offsets (compaction,
        transaction markers)."""
        progress_at = self._clock()
        position = at
        while position < last:
            now_at = position
            for m in self._consumer.consume(min(500, last - position), 0.5):
                now_at = max(now_at, _reached(m))
                if m.error() is not None:
                    continue
                self.fetched += 1
                if first <= (o := m.offset()) < last and (keep is None or o in keep):
                    yield _record(m)
            if now_at > position:
                position, progress_at = now_at, self._clock()
            elif self._clock() - progress_at > self._stall:
                raise BrokerUnavailable(
                    f"re-read of {self._topic}[{self._partition}] stalled at offset {position} "
                    f"(span {first}..{last}) for {self._stall:.0f}s"
                )
        return position

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception as exc:  # closing must never fail the loop
            log.info("closing a re-read consumer failed", error=str(exc))


class ControlTopic:
    """A `ControlPort` over librdkafka (see `adapters.control.ControlTopic`)."""

    catch_up_timeout_s = 30.0

    def __init__(
        self, topic: str, producer: Producer, bootstrap: str, extra: Mapping[str, Any]
    ) -> None:
        self.topic = topic
        self._producer = producer
        self._consumer = _reader(bootstrap, extra)
        try:
            md = self._consumer.list_topics(topic, timeout=OFFSETS_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"control topic {topic!r}: {exc!r}") from exc
        parts = sorted(md.topics[topic].partitions) if topic in md.topics else [0]
        self._tps = [TopicPartition(topic, p) for p in parts or [0]]
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts or [0]])
        self._caught_up = False

    def poll(self) -> list[Record]:
        try:
            if not self._caught_up:
                return self._catch_up()
            return self._take(0)
        except KafkaException as exc:
            raise BrokerUnavailable(f"reading control topic {self.topic!r}: {exc!r}") from exc

    def _take(self, timeout_s: float) -> list[Record]:
        out: list[Record] = []
        for m in self._consumer.consume(500, timeout_s):
            _reached(m)  # a fatal error raises
            if m.error() is None:
                out.append(_record(m))
        return out

    def _catch_up(self) -> list[Record]:
        end = {
            tp.partition: self._consumer.get_watermark_offsets(tp, timeout=OFFSETS_TIMEOUT_S)[1]
            for tp in self._tps
        }
        out: list[Record] = []
        deadline = time.monotonic() + self.catch_up_timeout_s
        reached = dict.fromkeys(end, 0)
        while any(reached[p] < end[p] for p in end):
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"timed out reading control topic {self.topic!r}")
            for m in self._consumer.consume(500, 0.2):
                reached[m.partition()] = max(reached[m.partition()], _reached(m))
                if m.error() is None:
                    out.append(_record(m))
        self._caught_up = True
        return out

    def retire(self, key: str) -> Sent:
        return self._producer.send(self.topic, None, key=key.encode(), partition=0)

    def close(self) -> None:
        self._consumer.close()


# -- admin -----------------------------------------------------------------------------------


class Admin(_KafkaPythonAdmin):
    """Topic checks and creation (the checks are `adapters.kafka.Admin`'s, shared)."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self._rd = AdminClient(rd_config(bootstrap, extra, COMMON))

    def _describe(self, topic: str) -> tuple[int | None, int]:
        try:
            # All topics: asking for one by name would create it where the broker
            # auto-creates topics.
            md = self._rd.list_topics(timeout=OFFSETS_TIMEOUT_S)
        except KafkaException:
            return None, 0
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return None, 0
        first = t.partitions[min(t.partitions)]
        return len(t.partitions), len(first.replicas)

    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        """The topics of `topics` the cluster does not list (one metadata request for all;
        asking by name would create them where the broker auto-creates topics)."""
        try:
            md = self._rd.list_topics(timeout=OFFSETS_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"list topics failed: {exc!r}") from exc
        return [t for t in topics if t not in md.topics]

    def brokers(self) -> int:
        try:
            found = self._rd.describe_cluster().result(timeout=OFFSETS_TIMEOUT_S).nodes
        except KafkaException as exc:
            raise BrokerUnavailable(f"describe cluster failed: {exc!r}") from exc
        return max(1, len(found))

    def _create(
        self, topic: str, partitions: int, configs: dict[str, str], replication_factor: int
    ) -> None:
        futures = self._rd.create_topics(
            [NewTopic(topic, partitions, replication_factor, config=configs)],
            request_timeout=OFFSETS_TIMEOUT_S,
        )
        try:
            futures[topic].result(timeout=self.visible_timeout_s)
        except KafkaException as exc:
            err = _error(exc)
            if err is None or err.code() != RdError.TOPIC_ALREADY_EXISTS:
                raise ConfigError(f"could not create topic {topic!r}: {exc}") from exc
            log.info("topic created by another client meanwhile", topic=topic)

    def _grow(self, topic: str, partitions: int) -> None:
        self._rd.create_partitions([NewPartitions(topic, partitions)])[topic].result(
            timeout=self.visible_timeout_s
        )

    def max_message_bytes(self, topic: str) -> int:
        try:
            return int(self.topic_config(topic).get("max.message.bytes", ""))
        except ValueError:
            return DEFAULT_MAX_MESSAGE_BYTES

    def topic_config(self, topic: str) -> dict[str, str]:
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        try:
            entries = self._rd.describe_configs([res])[res].result(timeout=OFFSETS_TIMEOUT_S)
        except KafkaException as exc:
            raise BrokerUnavailable(f"describe configs of {topic!r} failed: {exc!r}") from exc
        return {k: str(v.value) for k, v in entries.items()}

    def close(self) -> None:
        """AdminClient has nothing to close."""


if TYPE_CHECKING:  # each class answers its port: mypy checks it here (`clients.Backend` can't)

    def _ports(
        c: RequestConsumer, p: Producer, t: TransactionalProducer
    ) -> tuple[ConsumerPort, ProducerPort, TransactionalProducerPort]:
        return c, p, t
