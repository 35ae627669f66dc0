"""The one place that speaks kafka-python: clients, records, topics, rebalances.

kafka-python types stay in here; the runner sees `Record`, `Sent` and plain ints.
"""

from __future__ import annotations

import contextlib
import difflib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from kafka import (
    ConsumerRebalanceListener,
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    OffsetAndMetadata,
    TopicPartition,
)
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    IllegalGenerationError,
    InvalidProducerEpochError,
    KafkaConfigurationError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerFencedError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
    for_code,
)

from connector.adapters import kafka_patches  # noqa: F401  (applied at import)
from connector.adapters.access import (
    access_denied,
    describe_configs_denied,
    watch_sasl_failures,
)
from connector.config import KAFKA_CLIENT_KINDS, KAFKA_PREFIX, parse_bool
from connector.core.ledger_topic import check_ledger, ledger_replication
from connector.core.ports import (
    ConsumerPort,
    ProducerPort,
    SendHandle,
    TransactionalProducerPort,
)
from connector.core.records import Headers, Record
from connector.errors import (
    BrokerUnavailable,
    CommitFailed,
    ConfigError,
    Fenced,
    LedgerError,
    OpenTransaction,
    ProduceFailed,
    RecordTooLarge,
    TransactionInDoubt,
)
from connector.errors import (
    KafkaError as ConnectorKafkaError,
)

PROBE_INTERVAL_S = 5.0
"""After this long without records, an idle poll checks that the broker still answers."""
PROBE_TIMEOUT_S = 5.0
OFFSETS_TIMEOUT_S = 10.0
"""Offset look-ups give up after this (kafka-python's default would block for minutes)."""
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
"""Kafka's default `max.message.bytes` (topic) / `message.max.bytes` (broker)."""
_TOO_LARGE = (MessageSizeTooLargeError, RecordListTooLargeError)


def _produce_error(exc: BaseException) -> BaseException:
    """kafka-python's per-record size errors become `RecordTooLarge`; others stay as they are."""
    if isinstance(exc, _TOO_LARGE):
        return RecordTooLarge(f"record too large: {exc!r}")
    return exc


log = structlog.get_logger(__name__)


def _record(r: Any) -> Record:
    headers = [(k, v if v is not None else b"") for k, v in (r.headers or [])]
    return Record(r.topic, r.partition, r.offset, r.key, r.value, headers, r.timestamp)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # untyped base class
    """Queues partition changes; runs on kafka-python's IO thread, so it only records."""

    def __init__(self) -> None:
        self.events: deque[tuple[str, set[int]]] = deque()

    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.events.append(("revoked", {tp.partition for tp in revoked}))

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.events.append(("assigned", {tp.partition for tp in assigned}))

    def on_partitions_lost(self, lost: Iterable[Any]) -> None:
        self.events.append(("revoked", {tp.partition for tp in lost}))


# Any: kafka-python's client classes share DEFAULT_CONFIG but no common typed base.
_CLIENTS: tuple[Any, ...] = (KafkaConsumer, KafkaProducer, KafkaAdminClient)
_KIND: dict[Any, str] = {
    KafkaConsumer: "consumer",
    KafkaProducer: "producer",
    KafkaAdminClient: "admin",
}

CLIENT_ID_PREFIX = "client.id.prefix"
"""Key in the Kafka settings mapping (never a kafka-python name: those have no dots): the
runner puts `<group>.<replica>` here, and each client gets `<prefix>.<role>` as client.id
unless CONNECTOR_KAFKA_CLIENT_ID (or an override) sets one."""

_RESERVED: dict[str, str] = {
    "bootstrap_servers": "set KAFKA_BOOTSTRAP_SERVERS",
    "group_id": "set CONNECTOR_GROUP_ID",
    "transactional_id": "set CONNECTOR_TRANSACTIONAL_ID",
    "enable_auto_commit": "the sidecar commits offsets itself, only for durable work",
    "auto_offset_reset": "a partition without a committed offset is read from its start, so "
    "no request is skipped",
    "max_poll_records": "the sidecar sets it per poll",
}
"""kafka-python settings the sidecar sets itself; a value from the environment would be
dropped or break a guarantee, so it is refused with the reason."""

_SPECIAL: dict[str, Any] = {"send_buffer_bytes": int, "receive_buffer_bytes": int}
"""Settings whose kafka-python default is None but whose value is a number."""
_OBJECTS = {
    "key_serializer",
    "value_serializer",
    "key_deserializer",
    "value_deserializer",
    "sasl_oauth_token_provider",
    "ssl_context",
    "default_offset_commit_callback",
}
"""Settings whose value is a Python object: they cannot come from an environment string."""


def with_client_ids(extra: Mapping[str, Any], group_id: str, replica: str = "") -> dict[str, Any]:
    """`extra` with the client.id prefix `<group>.<replica>` (replica: the host name, which
    is the pod name in Kubernetes), unless it already has one."""
    return {CLIENT_ID_PREFIX: f"{group_id}.{replica or socket.gethostname()}", **extra}


def kafka_var(key: str) -> str:
    """The environment variable a settings key came from."""
    kind, sep, rest = key.partition(".override.")
    if sep:
        return f"{KAFKA_PREFIX}{kind.upper()}_OVERRIDE_{rest.upper()}"
    return f"{KAFKA_PREFIX}{key.upper()}"


def _known(kind: str | None) -> set[str]:
    clients = _CLIENTS if kind is None else [c for c in _CLIENTS if _KIND[c] == kind]
    return {k for c in clients for k in c.DEFAULT_CONFIG}


def _default(name: str) -> Any:
    return next(c.DEFAULT_CONFIG[name] for c in _CLIENTS if name in c.DEFAULT_CONFIG)


def typed_value(name: str, raw: Any, var: str) -> Any:
    """A value from the environment typed like kafka-python's default for `name`.

    Strings stay strings (an all-digit password is a password, not an int); numbers must
    parse; booleans are strict. Values that are already typed (set in code) pass as they are.
    """
    if not isinstance(raw, str):
        return raw
    if name in _OBJECTS:
        raise ConfigError(
            f"{var}: {name} takes a Python object and cannot be set from the environment"
        )
    if name == "api_version":  # "3.7" or "3.7.0"; "auto" asks the broker
        if raw.strip().lower() == "auto":
            return None
        try:
            return tuple(int(p) for p in raw.strip().split("."))
        except ValueError as exc:
            raise ConfigError(f"{var}={raw!r} is not a version such as 3.7.0") from exc
    if name == "acks" and raw.strip().lower() == "all":
        return "all"
    default = _default(name)
    kind = _SPECIAL.get(name) or type(default)
    if kind is bool:
        return parse_bool(raw, var)
    if kind in (int, float):
        try:
            return int(raw) if kind is int or raw.strip().lstrip("-").isdigit() else float(raw)
        except ValueError as exc:
            raise ConfigError(f"{var}={raw!r} is not a valid {kind.__name__}") from exc
    if kind in (str, type(None)):
        return raw
    raise ConfigError(
        f"{var}: {name} takes a {kind.__name__} and cannot be set from the environment"
    )


def _unknown(var: str, name: str, kind: str | None) -> ConfigError:
    close = difflib.get_close_matches(name, sorted(_known(kind)), n=1)
    hint = (
        f"; did you mean {kafka_var(close[0] if kind is None else f'{kind}.override.{close[0]}')}?"
        if close
        else ""
    )
    owner = "kafka-python" if kind is None else f"kafka-python's {kind}"
    return ConfigError(f"{var}: {owner} has no setting {name!r}{hint}")


def check_kafka_settings(extra: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every client kind's typed settings; refuses unknown names (naming the closest
    kafka-python setting), reserved ones and values that do not parse. Run at start, so a
    typo stops the sidecar before it connects."""
    return {kind: _typed(extra, kind) for kind in KAFKA_CLIENT_KINDS}


def _typed(extra: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """Settings of one client kind: flat ones it knows, then its overrides."""
    flat: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    mine = _known(kind)
    for key, raw in extra.items():
        if key == CLIENT_ID_PREFIX:
            continue
        var = kafka_var(key)
        okind, sep, name = key.partition(".override.")
        if not sep:
            okind, name = "", key
        if okind and okind not in KAFKA_CLIENT_KINDS:
            raise ConfigError(f"{var}: unknown client kind {okind!r}")
        if name not in _known(okind or None):
            raise _unknown(var, name, okind or None)
        if name in _RESERVED:
            raise ConfigError(f"{var} cannot be set: {_RESERVED[name]}")
        value = typed_value(name, raw, var)
        if okind == kind:
            overrides[name] = value
        elif not okind and name in mine:
            flat[name] = value
    return {**flat, **overrides}


def client_config(
    client: type[Any], bootstrap: str, extra: Mapping[str, Any], role: str = ""
) -> dict[str, Any]:
    """Pass-through settings that this kind of client understands (security, timeouts...).

    kafka-python rejects unknown keys, and consumer-only keys such as session_timeout_ms
    would break the producer, so each client gets its own subset: the flat
    CONNECTOR_KAFKA_* settings it knows, then its kind's overrides. `role` names the client
    in its client.id (`<group>.<replica>.<role>`), so broker quotas, request logs and
    audit logs can tell the sidecar's clients apart.
    """
    kind = _KIND[client]
    cfg = _typed(extra, kind)
    prefix = extra.get(CLIENT_ID_PREFIX)
    if prefix and "client_id" not in cfg:
        cfg["client_id"] = f"{prefix}.{role or kind}"
    cfg["bootstrap_servers"] = bootstrap.split(",")
    return cfg


class RequestConsumer:
    """The consumer group member that reads request records; one owning thread."""

    def __init__(
        self, topic: str, group_id: str, bootstrap: str, extra: Mapping[str, Any], max_records: int
    ) -> None:
        self.topic = topic
        self._listener = _Listener()
        self._max_records = max_records
        self._confirmed = time.monotonic()
        self._consumer = KafkaConsumer(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_records,
            **client_config(KafkaConsumer, bootstrap, extra, "consumer"),
        )
        # kafka-python 3.0.12: a group join that completes before the topic's metadata is
        # known can leave the member with no partitions for good; load the metadata first.
        self._consumer.partitions_for_topic(topic)
        self._consumer.subscribe([topic], listener=self._listener)

    def poll(self, timeout_s: float) -> list[Record]:
        try:
            batches = self._consumer.poll(
                timeout_ms=max(0, int(timeout_s * 1000)), max_records=self._max_records
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"poll failed: {exc!r}") from exc
        out: list[Record] = []
        for recs in batches.values():
            out.extend(_record(r) for r in recs)
        now = time.monotonic()
        if out:
            self._confirmed = now
        elif now - self._confirmed > PROBE_INTERVAL_S:
            self._probe()
            self._confirmed = time.monotonic()
        return out

    def _probe(self) -> None:
        """An idle poll says nothing of the broker (kafka-python just retries inside); ask it
        for one end offset, so an outage surfaces as BrokerUnavailable and the loop backs off."""
        tps = sorted(self._consumer.assignment())[:1]
        if not tps:
            return
        try:
            self._consumer.end_offsets(tps, timeout_ms=int(PROBE_TIMEOUT_S * 1000))
        except KafkaError as exc:
            raise BrokerUnavailable(f"broker not answering: {exc!r}") from exc

    def rebalance_events(self) -> list[tuple[str, set[int]]]:
        events = list(self._listener.events)
        self._listener.events.clear()
        return events

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Commit next-offsets per partition (blocking): only durable work is covered."""
        if not offsets:
            return
        try:
            self._consumer.commit(
                {
                    TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                    for p, o in offsets.items()
                }
            )
        except KafkaError as exc:
            raise CommitFailed(f"offset commit refused: {exc!r}") from exc

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        """Seek to the committed offset (or the beginning) and return where each starts.

        kafka-python may keep its in-memory position for a partition that is revoked and
        assigned again in one rebalance, which would skip the records of dropped batches;
        an explicit seek and a watermark that starts exactly there rule that out. A committed
        offset below the log start (retention deleted records never read) is returned as
        is, so the first record read shows the gap and the loop reports it.
        """
        try:
            return self._rewind(partitions)
        except KafkaError as exc:
            raise BrokerUnavailable(f"rewind failed: {exc!r}") from exc

    def _rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        timeout_ms = int(OFFSETS_TIMEOUT_S * 1000)
        beginning = self._consumer.beginning_offsets(tps, timeout_ms) if tps else {}
        starts: dict[int, int] = {}
        for tp in tps:
            committed = self._consumer.committed(tp, timeout_ms=timeout_ms)
            start = beginning[tp] if committed is None else committed
            self._consumer.seek(tp, max(start, beginning[tp]))
            starts[tp.partition] = start
        return starts

    def assignment(self) -> set[int]:
        return {tp.partition for tp in self._consumer.assignment()}

    def highwaters(self) -> dict[int, int]:
        """End offsets as the last fetch responses reported them (no request; for lag)."""
        out: dict[int, int] = {}
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            if hw is not None:
                out[tp.partition] = int(hw)
        return out

    def transaction_offsets(self, offsets: Mapping[int, int]) -> tuple[object, object]:
        """Offsets for `send_offsets_to_transaction`, and the membership snapshot (KIP-447).

        The snapshot is this member's generation as the consumer last knew it: a replica
        the group dropped while it was stalled still holds the old one, so the group
        coordinator refuses its transaction.
        """
        group = self._consumer.group_metadata()
        if group.generation_id < 0 or not group.member_id:
            # kafka-python resets the generation as soon as a heartbeat learns the member
            # was dropped; the broker would accept a transactional commit without one
            # (generation -1 is how pre-KIP-447 clients commit), so refuse it here.
            raise Fenced("not a member of the group: dropped, and not rejoined yet")
        tps = {
            TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()
        }
        return tps, group

    def pause(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if tps:
            self._consumer.pause(*tps)

    def resume_all(self) -> None:
        paused = list(self._consumer.paused())
        if paused:
            self._consumer.resume(*paused)

    def resume(self, partitions: Iterable[int]) -> None:
        tps = [TopicPartition(self.topic, p) for p in partitions]
        if tps:
            self._consumer.resume(*tps)

    def seek(self, partition: int, offset: int) -> None:
        self._consumer.seek(TopicPartition(self.topic, partition), offset)

    def close(self) -> None:
        self._consumer.close()


@dataclass(slots=True)
class Sent:
    """A pending produce; `ok()` after a flush says whether the broker acked it."""

    future: Any
    failed: BaseException | None = None
    """Set when `send` itself refused the record (e.g. over `max_request_size`)."""
    args: tuple[Any, ...] = ()
    """What was sent (topic, value, key, headers, partition), to send it again after the
    transaction holding it aborted."""

    def ok(self) -> bool:
        if self.failed is not None:
            return False
        return bool(self.future.is_done and self.future.succeeded())

    def error(self) -> BaseException | None:
        if self.failed is not None:
            return self.failed
        if not self.future.is_done or self.future.exception is None:
            return None
        return _produce_error(self.future.exception)


PRODUCER_CONFIG: dict[str, Any] = {
    "enable_idempotence": True,
    "acks": "all",
    "max_in_flight_requests_per_connection": 5,
    # Bigger batches: a job's results go out in one burst, and kafka-python's IO thread pays
    # per produce request (and competes with the loop thread for the GIL). Bare kafka-python,
    # result-size records, same run (bench/README.md): linger 20 ms / 256 KB sends ~1.3-2.5x
    # as many records/s as linger 5 ms / 16 KB. No added latency where it matters: every
    # ledger write and result burst ends in flush(), which sends at once regardless of linger.
    # gzip gained nothing on realistic (distinct) results; lz4/zstd need extra packages.
    "linger_ms": 20,
    "batch_size": 256 * 1024,
}
"""The sidecar producer's settings (bench/run.py measures bare kafka-python with the same)."""


def producer_config(
    bootstrap: str, extra: Mapping[str, Any], role: str = "producer"
) -> dict[str, Any]:
    """PRODUCER_CONFIG under the user's CONNECTOR_KAFKA_* settings (e.g. batch_size), with
    idempotence and acks=all kept: nothing may be acked that a broker could still lose."""
    return {
        **PRODUCER_CONFIG,
        **client_config(KafkaProducer, bootstrap, extra, role),
        "enable_idempotence": True,
        "acks": "all",
    }


class Producer:
    """One idempotent producer for results, dead letters and ledger entries."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any]) -> None:
        self.max_request_size = producer_max_request_size(extra)
        self._producer = KafkaProducer(**producer_config(bootstrap, extra))

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Sent:
        args = (topic, value, key, headers, partition)
        try:
            fut = self._producer.send(
                topic, value=value, key=key, headers=headers or [], partition=partition
            )
        except KafkaError as exc:  # refused before sending, e.g. over max_request_size
            return Sent(None, _produce_error(exc), args)
        except ValueError as exc:
            # kafka-python: "Unrecognized partition" when its metadata predates a partition
            # (a ledger just grown). Not the record's fault: refresh, and let the loop back
            # off and retry the pass (a KafkaError), never quarantine a job for it.
            self._producer._metadata.request_update()  # kafka-python has no public refresh
            raise BrokerUnavailable(f"producer metadata lags behind {topic}: {exc}") from exc
        return Sent(fut, None, args)

    def flush_and_check(self, sent: Sequence[SendHandle], timeout_s: float = 60.0) -> None:
        """Block until every send is acked; raise if any failed (nothing may pass unacked)."""
        if not sent:
            return
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise ProduceFailed(f"flush failed: {exc!r}") from exc
        for s in sent:
            if not s.ok():
                raise ProduceFailed(f"produce failed: {s.error()!r}")

    def await_partitions(self, topic: str, n: int, timeout_s: float = 30.0) -> None:
        """Refresh metadata until `topic` shows `n` partitions (after the ledger grew):
        kafka-python refuses sends to a partition its cached metadata does not know."""
        deadline = time.monotonic() + timeout_s
        metadata = self._producer._metadata  # kafka-python has no public refresh
        while len(metadata.partitions_for_topic(topic) or ()) < n:
            if time.monotonic() > deadline:
                raise LedgerError(f"producer metadata never showed {n} partitions of {topic!r}")
            metadata.request_update()
            self._producer._sender.wakeup()
            time.sleep(0.2)

    def close(self, timeout_s: float = 10.0) -> None:
        self._producer.close(timeout=timeout_s)


_STALE_MEMBER = (CommitFailedError, IllegalGenerationError, UnknownMemberIdError)


class _Stuck(Exception):
    """A bounded call outlived its watchdog (see `_bounded`)."""


def _bounded(call: Any, timeout_s: float, what: str) -> None:
    """Run a blocking kafka-python call with a deadline (kafka-notes A.1: commit, abort and
    send_offsets wait on the broker with no timeout of their own).

    On timeout the call is left running in its daemon thread and `_Stuck` is raised: the
    transaction's outcome is unknown, so the caller must not go on as if it had committed.
    `TransactionalProducer` turns it into `TransactionInDoubt`, which ends the process (the
    ledger and the broker's transaction timeout make that safe).
    """
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)

    thread = threading.Thread(target=target, name=f"kafka-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if not outcome:
        raise _Stuck(f"{what} did not complete within {timeout_s:.0f} s")
    if outcome[0] is not None:
        raise outcome[0]


TRANSACTION_TIMEOUT_MS = 30_000
"""Default transaction.timeout.ms of the sidecar's transactional producer."""


PRODUCER_FENCED_LIMIT_S = 60.0
"""A second producer fencing this soon after the first, with no commit in between, means
another live producer shares the transactional.id: a configuration error."""


class TransactionalProducer(Producer):
    """A producer with a transactional.id, bound to the consumer group by KIP-447.

    Transactions are explicit units of work: `begin_transaction` starts one (a send outside
    one begins it implicitly), `commit_transaction` commits its sends with the given request
    offsets and the consumer's group membership (the group coordinator refuses the whole
    transaction when this replica's generation is stale), and any failure aborts it. A
    begin that finds sends left open by a unit that failed aborts them first: they never
    ride along with the next, unrelated commit.
    """

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
        self._fenced_at: float | None = None
        self._stale = False
        """The kafka-python producer must be replaced before its next use (see `_renew`)."""
        self.max_request_size = producer_max_request_size(extra)
        cfg = producer_config(bootstrap, extra, "txn")
        # Our transactions are short (a claim, one pass's writes, one chunk of results): a
        # crashed replica's open transaction is aborted by the broker this soon, and until
        # then it holds back every read_committed read of its partitions (the next owner's
        # ledger load waits for it). kafka-python's default is 60 s.
        cfg.setdefault("transaction_timeout_ms", TRANSACTION_TIMEOUT_MS)
        self._cfg = cfg
        self._producer = self._make()

    def _make(self) -> Any:
        producer = KafkaProducer(**self._cfg, transactional_id=self._transactional_id)
        # Honours max_block_ms; fences an earlier producer with the same id and aborts
        # whatever transaction it left open.
        producer.init_transactions()
        return producer

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
        self._fresh()
        if not self._open:
            self._producer.begin_transaction()
            self._open = True
        self._sends += 1
        return super().send(topic, value, key, headers, partition)

    def commit_transaction(
        self, sent: Sequence[SendHandle], offsets: Mapping[int, int], consumer: Any
    ) -> None:
        """Commit the open transaction: `sent`, then `offsets` with the group membership.

        `Fenced`: the group moved on (stale generation) or the producer was fenced (its
        transaction outlived transaction.timeout.ms, or another producer took the id; a
        second time within `PRODUCER_FENCED_LIMIT_S` is a `ConfigError`). `RecordTooLarge`:
        a record was refused as too large and the transaction aborted (the caller sends its
        unit again with the fallbacks). `TransactionInDoubt`: a call outlived its watchdog.
        Any other failure aborts and raises `ProduceFailed`.
        """
        if not self._sends and not offsets:
            return  # nothing to commit (an empty transaction has no broker-side state)
        self._fresh()
        try:
            if not self._open:
                self._producer.begin_transaction()
                self._open = True
            self.flush_and_check(sent, self._timeout_s)
            if offsets:
                tps, group = consumer.transaction_offsets(offsets)
                self._drop_stale_offsets()
                _bounded(
                    lambda: self._producer.send_offsets_to_transaction(tps, group),
                    self._timeout_s,
                    "send_offsets_to_transaction",
                )
            _bounded(self._producer.commit_transaction, self._timeout_s, "commit_transaction")
            self._open = False
            self._sends = 0
        except _Stuck as exc:
            self._open = False
            raise TransactionInDoubt(f"transaction outcome unknown: {exc}") from exc
        except Fenced:
            self._abort()
            raise
        except _STALE_MEMBER as exc:
            self._abort()
            raise Fenced(f"transaction refused, group generation is stale: {exc!r}") from exc
        except FencedInstanceIdError as exc:
            self._abort()
            raise Fenced(f"transaction refused, instance id fenced: {exc!r}") from exc
        except ProducerFencedError as exc:
            raise self._producer_fenced(exc) from exc
        except ProduceFailed as exc:
            if _fenced_in(sent, exc):
                # Its sends failed with the producer's fencing (a replacement took the id,
                # or its transaction timed out): the producer is in an error state for good,
                # so it is renewed, as when the commit itself says fenced.
                raise self._producer_fenced(exc) from exc
            self._abort()
            too_large = _too_large_in(sent)
            if too_large is not None:
                # kafka-python 3.0.12 keeps the refused batch's sequence numbers, so the
                # next transaction's sends would fail out of order: a fresh producer (same
                # id, next epoch) starts them over.
                self._renew()
                raise RecordTooLarge(f"transaction aborted: {too_large!r}") from exc
            raise ProduceFailed(f"transaction failed and was aborted: {exc!r}") from exc
        except KafkaError as exc:
            self._abort()
            raise ProduceFailed(f"transaction failed and was aborted: {exc!r}") from exc

    def _producer_fenced(self, exc: BaseException) -> Exception:
        """The broker bumped this transactional.id's epoch: the transaction ran past
        transaction.timeout.ms (a big unit of work), or another producer took the id. This
        producer can never commit again: a new one takes over the id at its next use, and
        the loop drops its partitions as for any fencing. Fenced twice within
        `PRODUCER_FENCED_LIMIT_S`, whatever committed in between: the id is shared (two
        producers taking it from each other in turn each commit between their fencings)."""
        self._open = False
        self._sends = 0
        now = time.monotonic()
        shared = self._fenced_at is not None and now - self._fenced_at < PRODUCER_FENCED_LIMIT_S
        self._fenced_at = now
        if shared:
            return ConfigError(
                f"transactional.id {self._transactional_id!r} is used by another producer; "
                "every replica needs its own (CONNECTOR_TRANSACTIONAL_ID)"
            )
        self._renew()
        return Fenced(f"producer fenced (transaction timed out, or the id was taken): {exc!r}")

    def _renew(self) -> None:
        """Replace the kafka-python producer by a fresh one with the same transactional.id
        (its init fences the old one and aborts whatever it left open) at its next use
        (`_fresh`): not now, so that a replacement which took the id is not fenced back
        before it was even used (then two producers sharing an id show up as such)."""
        self._open = False
        self._sends = 0
        self._stale = True
        try:
            self._producer.close(timeout=0)
        except Exception as exc:  # the old producer is unusable anyway
            log.warning("closing the replaced producer failed", error=repr(exc))

    def _fresh(self) -> None:
        """A pending replacement of the producer, now (`BrokerUnavailable` if it fails)."""
        if not self._stale:
            return
        try:
            self._producer = self._make()
        except KafkaError as exc:
            raise BrokerUnavailable(f"could not renew the transactional producer: {exc!r}") from exc
        self._stale = False

    def resend(self, handle: SendHandle) -> Sent:
        """Send `handle`'s record again (its transaction aborted)."""
        if not isinstance(handle, Sent):
            raise TypeError(f"not a send of this producer: {handle!r}")
        return self.send(*handle.args)

    def abort_transaction(self) -> None:
        self._abort()

    def _drop_stale_offsets(self) -> None:
        """Forget offsets a failed transaction left queued in kafka-python.

        kafka-python 3.0.12 keeps a TxnOffsetCommit's offsets until the broker accepts them,
        and neither an abort nor the next transaction clears them: the next
        `send_offsets_to_transaction` merges its own into them and commits all. So a replica
        refused as stale (UNKNOWN_MEMBER_ID after a stall) that rejoins and commits for the
        partitions it got now also commits its old offsets of partitions it lost, moving
        the new owner's committed offset back: the new owner rewinds there and batches
        requests a job already answered (chaos run of 35813d5, `kills_and_stalls`: p1
        moved back from 174 to 112). Every transaction sends the offsets it means, nothing
        else.
        """
        tm = getattr(self._producer, "_transaction_manager", None)  # no public accessor
        pending = getattr(tm, "_pending_txn_offset_commits", None)
        if pending:
            log.warning(
                "dropping offsets a failed transaction left queued in the client",
                partitions=sorted(tp.partition for tp in pending),
            )
            with getattr(tm, "_lock", contextlib.nullcontext()):
                pending.clear()

    def _abort(self) -> None:
        self._drop_stale_offsets()
        if not self._open:
            return
        self._open = False
        self._sends = 0
        if self._await_epoch_bump():
            return  # the bump aborted the transaction at the broker
        try:
            _bounded(self._producer.abort_transaction, self._timeout_s, "abort_transaction")
        except _Stuck as exc:
            raise TransactionInDoubt(f"transaction abort outcome unknown: {exc}") from exc
        except KafkaError as exc:
            if self._await_epoch_bump():
                return
            log.warning("transaction abort failed", error=repr(exc))

    def _await_epoch_bump(self) -> bool:
        """Wait out kafka-python's epoch bump (KIP-360), if one runs; True if one ran.

        A record refused inside a transaction (too large, out of sequence) makes kafka-python
        bump the producer epoch, which aborts the transaction at the broker; an abort or a
        send meanwhile fails (invalid transition, out-of-order sequence). Bounded by the
        producer's timeout; one that does not end is a transaction in doubt.
        """
        tm = getattr(self._producer, "_transaction_manager", None)  # no public accessor
        if tm is None or not tm.is_bumping_epoch():
            return False
        deadline = time.monotonic() + self._timeout_s
        while tm.is_bumping_epoch():
            if time.monotonic() > deadline:
                raise TransactionInDoubt("the producer's epoch bump did not complete")
            time.sleep(0.01)
        return True


_PRODUCER_FENCED = (ProducerFencedError, InvalidProducerEpochError)


def _fenced_in(sent: Sequence[SendHandle], exc: BaseException) -> bool:
    """Whether a send of `sent` (or the flush, `exc`'s cause) failed because this
    transactional producer was fenced."""
    for s in sent:
        future = getattr(s, "future", None)
        if future is not None and isinstance(getattr(future, "exception", None), _PRODUCER_FENCED):
            return True
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, _PRODUCER_FENCED):
            return True
        cause = cause.__cause__
    return False


def _too_large_in(sent: Sequence[SendHandle]) -> BaseException | None:
    """The first send of `sent` refused as too large, if any."""
    for s in sent:
        err = s.error()
        if isinstance(err, RecordTooLarge):
            return err
    return None


def read_partition(
    topic: str,
    partition: int,
    bootstrap: str,
    extra: Mapping[str, Any],
    start: int | None = None,
    stop: int | None = None,
    timeout_s: float = 60.0,
    committed: bool = False,
    role: str = "reader",
) -> list[Record]:
    """Read [start, min(stop, end)) of one partition with a group-less consumer.

    Used to rebuild the ledger and to re-read request payloads by offset, so the
    ledger never has to hold payloads. `committed`: read_committed, so records of aborted
    transactions (a fenced claim, a zombie's INTENTs in exactly-once mode) are never seen.
    kafka-python's errors become `BrokerUnavailable`.
    """
    try:
        return _read_partition(
            topic, partition, bootstrap, extra, start, stop, timeout_s, committed, role
        )
    except KafkaError as exc:
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
    role: str,
) -> list[Record]:
    cfg = client_config(KafkaConsumer, bootstrap, extra, role)
    if committed:
        cfg["isolation_level"] = "read_committed"
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **cfg)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        deadline = time.monotonic() + timeout_s
        timeout_ms = int(min(timeout_s, OFFSETS_TIMEOUT_S) * 1000)
        if committed:
            # Read_committed ends at the last stable offset; an open transaction (one a
            # crashed producer left) holds it back until it commits or is aborted, and
            # entries committed after it would be missed: wait until it has ended.
            hw = _high_watermark(tp, bootstrap, extra, role)
            while consumer.end_offsets([tp], timeout_ms)[tp] < hw:
                if time.monotonic() > deadline:
                    raise OpenTransaction(topic, partition)
                time.sleep(0.2)
        begin = consumer.beginning_offsets([tp], timeout_ms)[tp]
        end = consumer.end_offsets([tp], timeout_ms)[tp]
        first = begin if start is None else max(start, begin)
        last = end if stop is None else min(stop, end)
        out: list[Record] = []
        if first >= last:
            return out
        consumer.seek(tp, first)
        while consumer.position(tp) < last:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(f"timed out reading {topic}[{partition}] {first}..{last}")
            for recs in consumer.poll(timeout_ms=500).values():
                out.extend(_record(r) for r in recs if r.offset < last)
        return out
    finally:
        consumer.close()


def _high_watermark(tp: Any, bootstrap: str, extra: Mapping[str, Any], role: str) -> int:
    """The end offset as a read_uncommitted reader sees it (open transactions included)."""
    consumer = KafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        **client_config(KafkaConsumer, bootstrap, extra, role),
    )
    try:
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


class Admin:
    """Topic checks and creation at start-up."""

    visible_timeout_s = 30.0
    """How long a created (or concurrently created) topic may take to show in metadata."""

    def __init__(self, bootstrap: str, extra: Mapping[str, Any], role: str = "admin") -> None:
        self._extra = extra
        self._admin = KafkaAdminClient(**client_config(KafkaAdminClient, bootstrap, extra, role))

    def partitions(self, topic: str) -> int | None:
        return self._describe(topic)[0]

    def _describe(self, topic: str) -> tuple[int | None, int]:
        """(partition count or None if missing, replication factor of its first partition)."""
        try:
            desc = self._admin.describe_topics([topic])
        except KafkaError:
            return None, 0
        for t in desc:
            if topic in (t.get("topic"), t.get("name")) and not t.get("error_code"):
                parts = t.get("partitions") or []
                if not parts:
                    return None, 0
                first = parts[0]
                replicas = first.get("replica_nodes", first.get("replicas")) or []
                return len(parts), len(replicas)
        return None, 0

    def missing_topics(self, topics: Sequence[str]) -> list[str]:
        """The topics of `topics` the cluster does not have. Any other answer than "unknown
        topic" (an authorization error, say) is raised, never taken for a missing topic."""
        try:
            desc = self._admin.describe_topics(list(topics))
        except KafkaError as exc:
            raise BrokerUnavailable(f"describe topics failed: {exc!r}") from exc
        missing: set[str] = set()
        for t in desc:
            name = t.get("topic", t.get("name"))
            code = t.get("error_code") or 0
            if code == UnknownTopicOrPartitionError.errno:
                missing.add(name)
            elif code:
                err = for_code(code)(f"topic {name!r}")
                denied = access_denied(err, self._extra, "checking topics", f"topic {name!r}")
                if denied is not None:
                    raise denied
                raise ConfigError(f"topic {name!r}: {type(err).__name__}")
        return [t for t in topics if t in missing]

    def brokers(self) -> int:
        """Brokers in the cluster that are not fenced."""
        try:
            found = self._admin.describe_cluster().get("brokers") or []
        except KafkaError as exc:
            raise BrokerUnavailable(f"describe cluster failed: {exc!r}") from exc
        return max(1, sum(not b.get("is_fenced") for b in found))

    def ensure_topic(
        self,
        topic: str,
        partitions: int,
        configs: Mapping[str, str] | None = None,
        replication_factor: int = -1,
    ) -> int:
        """Create the topic if missing; return its partition count.

        A topic this principal may not describe looks missing, and creating it is then
        refused: either way the AccessDenied names the topic.
        """
        try:
            return self._ensure_topic(topic, partitions, configs, replication_factor)
        except KafkaError as exc:
            denied = access_denied(
                exc, self._extra, f"describing or creating topic {topic!r}", topic
            )
            if denied is not None:
                raise denied from exc
            raise

    def _ensure_topic(
        self,
        topic: str,
        partitions: int,
        configs: Mapping[str, str] | None,
        replication_factor: int,
    ) -> int:
        existing = self.partitions(topic)
        if existing is not None:
            return existing
        self._create(topic, partitions, dict(configs or {}), replication_factor)
        deadline = time.monotonic() + self.visible_timeout_s
        while (found := self.partitions(topic)) is None:
            if time.monotonic() > deadline:
                raise ConfigError(
                    f"could not create topic {topic!r}: still not visible after "
                    f"{self.visible_timeout_s:.0f}s"
                )
            time.sleep(0.2)
        return found

    def ensure_ledger(self, topic: str, partitions: int) -> int:
        """Create, check and grow the ledger; return its `max.message.bytes`.

        It must be compacted and co-partitioned with the request topic: a new one gets
        `partitions` partitions, min(3, brokers) replicas and min.insync.replicas
        min(2, replicas); an existing one with fewer partitions than the request topic is
        grown to match (see `core.ledger_topic.check_ledger`).
        """
        brokers = self.brokers()
        rf, min_isr = ledger_replication(brokers)
        configs = {"cleanup.policy": "compact", "min.insync.replicas": str(min_isr)}
        self.ensure_topic(topic, partitions, configs, replication_factor=rf)
        n, replication = self._describe(topic)
        config = self.topic_config(topic)
        check = check_ledger(
            topic, n or 0, partitions, replication, brokers, config.get("cleanup.policy", "")
        )
        if check.error is not None:
            raise LedgerError(check.error)
        for warning in check.warnings:
            log.warning(warning, topic=topic)
        if check.grow_to is not None:
            log.warning(
                "growing the ledger to match the request topic",
                topic=topic,
                partitions=n,
                to=check.grow_to,
            )
            try:
                self._grow(topic, check.grow_to)
            except Exception as exc:
                if self.partitions(topic) != check.grow_to:  # another replica may have won
                    raise LedgerError(f"could not grow ledger {topic!r}: {exc!r}") from exc
            deadline = time.monotonic() + 30
            while (self.partitions(topic) or 0) < check.grow_to:
                if time.monotonic() > deadline:
                    raise LedgerError(f"ledger {topic!r} did not grow to {check.grow_to}")
                time.sleep(0.2)
        try:
            return int(config.get("max.message.bytes", "1048588"))
        except ValueError:
            return 1048588

    def _create(
        self, topic: str, partitions: int, configs: dict[str, str], replication_factor: int
    ) -> None:
        """Ask for the topic; one created meanwhile by another client is not an error."""
        try:
            self._admin.create_topics(
                {
                    topic: {
                        "num_partitions": partitions,
                        "replication_factor": replication_factor,
                        "configs": configs,
                    }
                },
                wait_for_metadata=True,
            )
        except TopicAlreadyExistsError:
            # Replicas starting together race to create it; the loser's metadata may not
            # show the topic (with leaders) for a moment yet: `ensure_topic` waits for it.
            log.info("topic created by another client meanwhile", topic=topic)
        except KafkaTimeoutError:
            log.info("topic not visible yet after create; waiting", topic=topic)

    def _grow(self, topic: str, partitions: int) -> None:
        self._admin.create_partitions({topic: partitions})

    def max_message_bytes(self, topic: str) -> int:
        """The topic's `max.message.bytes` (its effective value, broker default included)."""
        try:
            return int(self.topic_config(topic).get("max.message.bytes", ""))
        except ValueError:
            return DEFAULT_MAX_MESSAGE_BYTES

    def topic_config(self, topic: str) -> dict[str, str]:
        res = self._admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
        entries = res.get("topic", {}).get(topic, {}) if isinstance(res, dict) else {}
        if not entries:
            # kafka-python drops the per-resource error code; an existing topic always has
            # configs (config_filter="all"), so nothing back means DescribeConfigs was denied.
            raise describe_configs_denied(topic, self._extra)
        return {k: str(v.get("value")) for k, v in entries.items() if isinstance(v, dict)}

    def close(self) -> None:
        self._admin.close()


def producer_max_request_size(extra: Mapping[str, Any]) -> int:
    """The producer's `max_request_size` (its override, CONNECTOR_KAFKA_MAX_REQUEST_SIZE or
    kafka-python's default)."""
    return int(_typed(extra, "producer").get("max_request_size", _default("max_request_size")))


def connect_with_retry(
    make: Any,
    what: str,
    timeout_s: float,
    stop: threading.Event | None = None,
    extra: Mapping[str, Any] | None = None,
    resource: str = "",
) -> Any:
    """Call `make()` until the broker answers: the sidecar may start before Kafka.

    Authentication and authorization failures are not retried (`AccessDenied`); `extra`
    (the client settings) names the principal in that message, `resource` the group or
    transactional id the client uses (kafka-python's errors do not always carry it).
    """
    extra = extra or {}
    watch_sasl_failures()
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        began = time.monotonic()
        try:
            return make()
        except KafkaConfigurationError as exc:
            raise ConfigError(f"invalid Kafka settings for {what}: {exc}") from exc
        except ConnectorKafkaError as exc:  # mapped inside an adapter: retried there if at all
            denied = access_denied(exc, extra, what, resource)
            if denied is not None:
                raise denied from exc
            if not isinstance(exc, BrokerUnavailable):
                raise
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise
            log.warning("kafka not ready, retrying", what=what, error=str(exc), retry_in_s=delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, 10.0)
        except (KafkaError, OSError) as exc:
            denied = access_denied(exc, extra, what, resource, since=began)
            if denied is not None:
                raise denied from exc
            if time.monotonic() + delay > deadline or (stop is not None and stop.is_set()):
                raise BrokerUnavailable(
                    f"Kafka not reachable for {what} after {timeout_s:.0f}s: {exc}"
                ) from exc
            log.warning("kafka not ready, retrying", what=what, error=str(exc), retry_in_s=delay)
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
            delay = min(delay * 2, 10.0)


if TYPE_CHECKING:  # each class answers its port: mypy checks it here (`clients.Backend` can't)

    def _ports(
        c: RequestConsumer, p: Producer, t: TransactionalProducer
    ) -> tuple[ConsumerPort, ProducerPort, TransactionalProducerPort]:
        return c, p, t
