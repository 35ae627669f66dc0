"""Hostile bytes for the decoders and the validator, in-process: no broker, no sidecar.

Two engines share one budget of cases:

- **mutation fuzzing** (seeded `random`): valid records in every wire format (Avro
  single-object, Confluent-framed, JSON request events, ledger entries, result events) are
  bit-flipped, truncated, spliced, padded with huge varints, re-framed and JSON-mutated
  (wrong types, unknown keys, deep nesting, huge numbers);
- **property-based fuzzing** (hypothesis): arbitrary JSON values as request bodies and
  arbitrary field values for the request event, through `validate_request`, and arbitrary
  bytes through every decoder.

The contract under test: `RequestDecoder.decode` raises only `DecodeError`, `Codec.decode_ledger`
only `DecodeError`, `validate_request` only `InvalidRequest`. Anything else (a `KeyError`, a
`RecursionError`, a `MemoryError`, a hang) is a crash: one such record would stop a partition.
The client's `ResultReader.decode` is fuzzed too and reported as advisory (a downstream
consumer's poison pill, not a sidecar guarantee).
"""

from __future__ import annotations

import dataclasses
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from connector.client import ResultReader
from connector.core.codec import Codec
from connector.core.formats import RequestDecoder, confluent_frame, encode_json_result
from connector.core.records import (
    BatchKey,
    EntryState,
    ErrorInfo,
    Kind,
    LedgerEntry,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.schemas import load_schemas
from connector.core.validation import validate_request
from connector.errors import DecodeError, InvalidRequest

MAX_REQUEST_BYTES = 1_000_000
SLOW_CASE_S = 1.0
"""A single case slower than this is reported: a decoder that can be made to spin is a DoS."""


@dataclass
class Crash:
    target: str
    exc_type: str
    message: str
    where: str
    sample_hex: str
    count: int = 1


@dataclass
class FuzzReport:
    cases: int = 0
    by_target: Counter[str] = field(default_factory=Counter)
    crashes: dict[tuple[str, str, str], Crash] = field(default_factory=dict)
    advisory: dict[tuple[str, str, str], Crash] = field(default_factory=dict)
    slow: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def crash_count(self) -> int:
        return sum(c.count for c in self.crashes.values())

    def as_dict(self) -> dict[str, Any]:
        def rows(d: dict[tuple[str, str, str], Crash]) -> list[dict[str, Any]]:
            return [c.__dict__ for c in d.values()]

        return {
            "cases": self.cases,
            "by_target": dict(self.by_target),
            "crashes": rows(self.crashes),
            "crash_count": self.crash_count,
            "advisory_client_crashes": rows(self.advisory),
            "slow_cases": self.slow[:20],
            "seconds": round(self.seconds, 1),
        }


# -- the targets -------------------------------------------------------------------------------


def _schema_lookup() -> Callable[[int], Any]:
    """A registry double: ids 1.. are the released request schemas; 7 is a valid Avro schema
    of another record (the result); anything else is unknown (the registry's DecodeError, as
    `adapters.registry` raises; it also refuses non-Avro schemas before the codec sees them)."""
    versions = load_schemas("request")
    result_schema = load_schemas("result")[-1]

    def by_id(schema_id: int) -> Any:
        if 1 <= schema_id <= len(versions):
            return versions[schema_id - 1]
        if schema_id == 7:
            return result_schema
        raise DecodeError(f"unknown schema id {schema_id}")

    return by_id


class Targets:
    def __init__(self) -> None:
        self.codec = Codec()
        self.decoder = RequestDecoder(self.codec, _schema_lookup())
        self.reader = ResultReader.__new__(ResultReader)  # decode() only: no consumer
        self.reader._codec = self.codec
        self.reader._registry = None

    def request(self, data: bytes) -> None:
        """Decode as the intake does, then validate what decoded."""
        try:
            ev = self.decoder.decode(data)
        except DecodeError:
            return
        try:
            validate_request(ev, MAX_REQUEST_BYTES)
        except InvalidRequest:
            return

    def ledger(self, data: bytes) -> None:
        try:
            self.codec.decode_ledger(data)
        except DecodeError:
            return

    def event(self, ev: RequestEvent) -> None:
        try:
            validate_request(ev, MAX_REQUEST_BYTES)
        except InvalidRequest:
            return

    def result(self, data: bytes) -> None:
        try:
            self.reader.decode(data)
        except DecodeError:
            return


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}"


def _record(
    report: FuzzReport, target: str, exc: BaseException, sample: bytes | str, advisory: bool
) -> None:
    key = (target, type(exc).__name__, _where(exc))
    book = report.advisory if advisory else report.crashes
    if key in book:
        book[key].count += 1
        return
    raw = sample.encode("utf-8", "replace") if isinstance(sample, str) else sample
    book[key] = Crash(target, type(exc).__name__, str(exc)[:300], key[2], raw[:400].hex())


def run_case(
    report: FuzzReport, target: str, fn: Callable[[Any], None], arg: Any, advisory: bool = False
) -> None:
    report.cases += 1
    report.by_target[target] += 1
    began = time.perf_counter()
    try:
        fn(arg)
    except (Exception, RecursionError, MemoryError) as exc:  # anything else is a crash
        sample = arg if isinstance(arg, bytes | str) else repr(arg)
        _record(report, target, exc, sample, advisory)
    took = time.perf_counter() - began
    if took > SLOW_CASE_S:
        sample = arg if isinstance(arg, bytes) else repr(arg).encode()
        report.slow.append({"target": target, "seconds": round(took, 2), "hex": sample[:200].hex()})


# -- seeds -------------------------------------------------------------------------------------

BODIES: list[dict[str, Any]] = [
    {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]},
    {
        "contents": [
            {"parts": [{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}
        ],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "generationConfig": {"responseMimeType": "application/json", "temperature": 0.2},
    },
    {
        "contents": [{"role": "user", "parts": [{"fileData": {"fileUri": "files/abc"}}]}],
        "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT"}}]}],
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}],
    },
    {
        "contents": [
            {"role": "user", "parts": [{"text": "call f"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
        ],
        "cached_content": "cachedContents/x",
        "labels": {"a": "b"},
    },
]
EMBED_BODY: dict[str, Any] = {
    "content": {"parts": [{"text": "embed me"}]},
    "taskType": "RETRIEVAL_DOCUMENT",
    "outputDimensionality": 8,
}


def seed_events() -> list[RequestEvent]:
    out = [
        RequestEvent(
            f"fuzz-{i}",
            "gemini-2.5-flash",
            Kind.GENERATE,
            orjson.dumps(b).decode(),
            group="g" if i % 2 else "",
            priority=i,
            deadline_ms=None if i % 2 else 1_900_000_000_000,
            metadata={"tenant": "t", "n": str(i)},
            created_ms=1_700_000_000_000,
        )
        for i, b in enumerate(BODIES)
    ]
    out.append(
        RequestEvent("fuzz-e", "text-embedding-004", Kind.EMBED, orjson.dumps(EMBED_BODY).decode())
    )
    return out


def seed_records(t: Targets) -> dict[str, list[bytes]]:
    events = seed_events()
    single = [t.codec.encode_request(e) for e in events]
    confluent = [confluent_frame(1, s[10:]) for s in single]
    as_json = [
        orjson.dumps(
            {
                "request_id": e.request_id,
                "model": e.model,
                "kind": e.kind.value,
                "body": orjson.loads(e.body) if i % 2 else e.body,
                "group": e.group,
                "priority": e.priority,
                "deadline_ms": e.deadline_ms,
                "metadata": e.metadata,
                "created_ms": e.created_ms,
            }
        )
        for i, e in enumerate(events)
    ]
    ledger = [
        t.codec.encode_ledger(
            LedgerEntry(
                job_id=f"p0-{i}-x",
                key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE, i, "g"),
                offsets=(*tuple(range(i, i + 5 * (i + 1))), 1000 + i),
                attempt=1 + i,
                display_name=f"grp:p0-{i}-x",
                state=EntryState.SUBMITTED if i % 2 else EntryState.INTENT,
                use_file=bool(i % 2),
                est_tokens=10 * i,
                created_ms=1,
                updated_ms=2,
                provider_job="batches/abc" if i % 2 else None,
                input_file="files/in" if i % 2 else None,
            )
        )
        for i in range(3)
    ]
    results = [
        ResultEvent(
            "r-1",
            ResultStatus.OK,
            "gemini-2.5-flash",
            Kind.GENERATE,
            '{"candidates": []}',
            None,
            {"m": "v"},
            "batches/1",
            1,
            TokenUsage(1, 2, 3),
            1,
            2,
            0,
            5,
        ),
        ResultEvent(
            "r-2",
            ResultStatus.ERROR,
            "gemini-2.5-flash",
            Kind.EMBED,
            None,
            ErrorInfo(400, "INVALID_ARGUMENT", "bad"),
        ),
    ]
    result_records = [t.codec.encode_result(r) for r in results] + [
        encode_json_result(r) for r in results
    ]
    return {
        "single": single,
        "confluent": confluent,
        "json": as_json,
        "ledger": ledger,
        "result": result_records,
    }


# -- mutation engine ---------------------------------------------------------------------------

_INTERESTING = [
    b"\x00",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # the largest zig-zag varint: a huge length
    b"\xfe\xff\xff\xff\x0f",
    b"\x01",
    b"\xc3\x01",
    b"{",
    b'"',
    b"\\u0000",
    b"\xed\xa0\x80",  # a UTF-8 encoded surrogate
]


def mutate_bytes(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(10)
        if not b:
            b = bytearray(rng.choice(pool))
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i] = rng.randrange(256)
        elif op == 2:
            del b[i : i + rng.randint(1, 16)]
        elif op == 3:
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 4:
            b = b[: rng.randrange(len(b) + 1)]
        elif op == 5:
            b[i:i] = rng.choice(_INTERESTING)
        elif op == 6:
            j = rng.randrange(len(b))
            lo, hi = min(i, j), max(i, j)
            b[hi:hi] = b[lo : lo + 32]
        elif op == 7:
            other = rng.choice(pool)
            b = b[:i] + other[rng.randrange(len(other) + 1) :]
        elif op == 8:
            b[i : i + 1] = rng.choice(_INTERESTING)
        else:
            b = b + rng.randbytes(rng.randint(1, 64))
    return bytes(b)


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    k = rng.randrange(8 if depth < 4 else 5)
    if k == 0:
        return None
    if k == 1:
        return rng.choice((True, False))
    if k == 2:
        return rng.choice((0, -1, 2**63, -(2**64), 10**400 // 10**390, 1.5e308))
    if k == 3:
        return rng.choice(("", "x" * rng.randint(1, 300), "\u0000", "\ud7ff", "models/x", "🙂"))
    if k == 4:
        return rng.choice(("user", "model", "tool", "system", "files/abc", "cachedContents/x"))
    if k == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [
        "contents",
        "parts",
        "text",
        "role",
        "inlineData",
        "inline_data",
        "fileData",
        "file_data",
        "fileUri",
        "mimeType",
        "data",
        "functionCall",
        "systemInstruction",
        "system_instruction",
        "generationConfig",
        "tools",
        "cachedContent",
        "model",
        "content",
        "taskType",
        "outputDimensionality",
        "thought",
        "request_id",
        "kind",
        "body",
        "metadata",
        "priority",
        "deadline_ms",
        "created_ms",
        "group",
        "__proto__",
        "$ref",
    ]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _deep(rng: random.Random) -> Any:
    """A nested list, deep enough to matter, shallow enough for orjson to write (< 1024)."""
    out: Any = []
    for _ in range(rng.choice((10, 100, 500))):
        out = [out]
    return out


def _deep_text(depth: int) -> str:
    return (
        '{"contents":[{"parts":[{"text":"x","functionCall":' + "[" * depth + "]" * depth + "}]}]}"
    )


def mutate_json(rng: random.Random, data: bytes) -> bytes:
    """Structural mutations of a JSON request event (or its body), re-serialised."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data
    op = rng.randrange(7)
    if op == 6:
        depth = rng.choice((64, 512, 2000, 20_000))
        obj["body"] = _deep_text(depth)
        return orjson.dumps(obj)
    target = obj
    if isinstance(obj.get("body"), dict) and rng.random() < 0.6:
        target = obj["body"]
    elif isinstance(obj.get("body"), str) and rng.random() < 0.6:
        try:
            body = orjson.loads(obj["body"])
        except orjson.JSONDecodeError:
            body = {}
        if isinstance(body, dict):
            mutate_obj(rng, body)
            obj["body"] = _dumps(body) if rng.random() < 0.8 else body
        try:
            return orjson.dumps(obj)
        except (orjson.JSONEncodeError, TypeError):
            return data
    if isinstance(target, dict):
        mutate_obj(rng, target)
    try:
        return orjson.dumps(obj)
    except (orjson.JSONEncodeError, TypeError):
        return data


def mutate_obj(rng: random.Random, obj: dict[str, Any]) -> None:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        keys = list(obj)
        if op == 0 and keys:
            obj[rng.choice(keys)] = _random_json(rng)
        elif op == 1 and keys:
            del obj[rng.choice(keys)]
        elif op == 2:
            obj[rng.choice(("zzz", "contents", "content", "parts", "request_id"))] = _random_json(
                rng
            )
        elif op == 3:
            # walk down and mutate something nested
            cur: Any = obj
            for _ in range(4):
                if isinstance(cur, dict) and cur:
                    k = rng.choice(list(cur))
                    if rng.random() < 0.3:
                        cur[k] = _random_json(rng)
                        break
                    cur = cur[k]
                elif isinstance(cur, list) and cur:
                    i = rng.randrange(len(cur))
                    if rng.random() < 0.3:
                        cur[i] = _random_json(rng)
                        break
                    cur = cur[i]
                else:
                    break
        else:
            obj[rng.choice(keys or ["x"])] = _deep(rng)


def _dumps(obj: Any) -> str:
    try:
        return orjson.dumps(obj).decode()
    except (orjson.JSONEncodeError, TypeError):
        return "{}"


_STR_VALUES = [
    "",
    "x" * 300,
    "a" * 20_000,
    "\ud800",
    "../x",
    "models/..",
    "models/",
    "tunedModels/other-project-model",
    "projects/other/locations/us/endpoints/1",
    "embed",
    "EMBED",
    "gemini-2.5-flash\n",
    " gemini",
    "\u0000",
]


def mutate_event(rng: random.Random, ev: RequestEvent) -> RequestEvent:
    """Hostile values of the right types: what the Avro or JSON decoders can hand over."""
    fields = {
        "request_id": ev.request_id,
        "model": ev.model,
        "kind": ev.kind,
        "body": ev.body,
        "group": ev.group,
        "priority": ev.priority,
        "deadline_ms": ev.deadline_ms,
        "metadata": ev.metadata,
        "created_ms": ev.created_ms,
    }
    for _ in range(rng.randint(1, 2)):
        name = rng.choice(list(fields))
        if name in ("request_id", "model", "group"):
            fields[name] = rng.choice(_STR_VALUES)
        elif name == "kind":
            fields[name] = rng.choice((Kind.GENERATE, Kind.EMBED))
        elif name == "body":
            fields[name] = rng.choice(
                (_dumps(_random_json(rng)), _deep_text(rng.choice((50, 5000))), "", "{", "null")
            )
        elif name in ("priority", "created_ms"):
            fields[name] = rng.choice((0, -1, 2**31, -(2**63), 2**63 - 1))
        elif name == "deadline_ms":
            fields[name] = rng.choice((None, 0, -1, 2**63 - 1))
        else:
            fields[name] = rng.choice(
                (
                    {},
                    {"k" * 9000: "v" * 9000},
                    {"": ""},
                    {"\ud800": "x"},
                    {str(i): "v" for i in range(2000)},
                )
            )
    return RequestEvent(**fields)


def mistype_event(rng: random.Random, ev: RequestEvent) -> RequestEvent:
    """Wrong types, as only a hand-built in-process event could carry (advisory)."""
    base = mutate_event(rng, ev)
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(RequestEvent)}
    fields[rng.choice(list(fields))] = rng.choice((None, 1, b"bytes", {"k": 1}, ["x"], "str"))
    return RequestEvent(**fields)


# -- hypothesis engine -------------------------------------------------------------------------


def _hypothesis_phase(t: Targets, report: FuzzReport, examples: int, seed: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    common = settings(
        max_examples=max(1, examples // 3),
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[__import__("hypothesis").Phase.generate],
    )
    json_leaf = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=30)
    )
    json_value = st.recursive(
        json_leaf,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids),
        max_leaves=20,
    )
    part = st.fixed_dictionaries(
        {},
        optional={
            "text": st.text(max_size=20) | json_value,
            "inlineData": st.fixed_dictionaries(
                {"data": st.text(max_size=10)},
                optional={"mimeType": st.text(max_size=10), "zz": json_value},
            )
            | json_value,
            "fileData": st.fixed_dictionaries({}, optional={"fileUri": st.text(max_size=10)})
            | json_value,
            "file_data": json_value,
            "functionCall": json_value,
            "thought": json_value,
        },
    )
    content = st.fixed_dictionaries(
        {"parts": st.lists(part, max_size=3) | json_value},
        optional={"role": st.sampled_from(["user", "model", "function", "", "x"]) | json_value},
    )
    body = (
        st.fixed_dictionaries(
            {"contents": st.lists(content, max_size=3) | json_value},
            optional={
                "systemInstruction": content,
                "system_instruction": content,
                "generationConfig": json_value,
                "tools": json_value,
                "cachedContent": json_value,
                "model": st.text(max_size=20),
                "content": content,
                "taskType": json_value,
                "outputDimensionality": json_value,
            },
        )
        | json_value
    )

    @common
    @given(
        body=body,
        kind=st.sampled_from([Kind.GENERATE, Kind.EMBED]),
        rid=st.text(max_size=300),
        model=st.text(max_size=40) | st.sampled_from(["gemini-2.5-flash", "models/x"]),
        meta=st.dictionaries(st.text(max_size=20), st.text(max_size=20), max_size=3),
    )
    def bodies(body: Any, kind: Kind, rid: str, model: str, meta: dict[str, str]) -> None:
        try:
            text = orjson.dumps(body).decode()
        except (orjson.JSONEncodeError, TypeError):
            text = str(body)
        run_case(
            report,
            "validate_request",
            t.event,
            RequestEvent(rid, model, kind, text, "", 0, None, meta, 0),
        )

    @common
    @given(data=st.binary(max_size=200), prefix=st.sampled_from([b"", b"\xc3\x01", b"\x00", b"{"]))
    def raw(data: bytes, prefix: bytes) -> None:
        run_case(report, "decode_request", t.request, prefix + data)
        run_case(report, "decode_ledger", t.ledger, prefix + data)
        run_case(report, "client_decode_result", t.result, prefix + data, advisory=True)

    @common
    @given(
        obj=st.dictionaries(
            st.sampled_from(
                [
                    "request_id",
                    "model",
                    "kind",
                    "body",
                    "group",
                    "priority",
                    "deadline_ms",
                    "metadata",
                    "created_ms",
                    "x",
                ]
            ),
            json_value,
            max_size=9,
        )
    )
    def json_events(obj: dict[str, Any]) -> None:
        try:
            data = orjson.dumps(obj)
        except (orjson.JSONEncodeError, TypeError):
            return
        run_case(report, "decode_request", t.request, data)

    bodies()
    raw()
    json_events()


# -- driver ------------------------------------------------------------------------------------


def fuzz(cases: int, seed: int = 1, hypothesis_share: float = 0.2) -> FuzzReport:
    """Run about `cases` cases (mutation + hypothesis) and report crashes."""
    began = time.monotonic()
    t = Targets()
    report = FuzzReport()
    seeds = seed_records(t)
    events = seed_events()
    pool = [r for rs in seeds.values() for r in rs]
    rng = random.Random(seed)
    # Fixed hostile cases first: each known shape of trouble at least once.
    fixed: list[bytes] = [
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"\xc3\x01" + b"\x00" * 8,
        seeds["single"][0][:10] + b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
        seeds["single"][0][:11],
        b"\x00\x00\x00\x00\x01",
        b"\x00\x00\x00\x00\x07" + seeds["single"][0][10:],
        b"\x00\x00\x00\x00\x08" + seeds["single"][0][10:],
        b"\x00\xff\xff\xff\xff" + seeds["single"][0][10:],
        b"{}",
        b"[]",
        b"null",
        b"   {",
        b'{"request_id": "a", "model": "m", "body": 1}',
        b'{"request_id": "a", "model": "m", "body": "' + b"[" * 100_000 + b'"}',
        b'{"request_id": "a", "model": "m", "body": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"request_id": "a", "model": "m", "body": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"request_id": "a", "model": "m", "body": {"a": ' + b"[" * 300 + b"]" * 300 + b"}}",
        b'{"request_id": "a", "model": "m", "body": "{}", "kind": "EMBED"}',
        b'{"request_id": "a", "model": "m", "body": "{}", "priority": 1e400}',
        b'{"request_id": "a", "model": "m", "body": "{}", "priority": 99999999999999999999999}',
        seeds["result"][0],
        seeds["ledger"][0],
    ]
    for data in fixed:
        run_case(report, "decode_request", t.request, data)
        run_case(report, "decode_ledger", t.ledger, data)
        run_case(report, "client_decode_result", t.result, data, advisory=True)
    for depth in (10, 1000, 100_000):
        ev = RequestEvent("deep", "gemini-2.5-flash", Kind.GENERATE, _deep_text(depth))
        run_case(report, "validate_request", t.event, ev)

    hyp = int(cases * hypothesis_share)
    remaining = max(0, cases - hyp - report.cases)
    targets: list[tuple[str, Callable[[Any], None], list[bytes], bool]] = [
        ("decode_request", t.request, seeds["single"] + seeds["confluent"] + seeds["json"], False),
        ("decode_ledger", t.ledger, seeds["ledger"], False),
        ("client_decode_result", t.result, seeds["result"], True),
    ]
    for i in range(remaining):
        r = i % 20
        if r < 12:
            name, fn, corpus, adv = targets[0]
            src = rng.choice(corpus)
            if src[:1] == b"{" and rng.random() < 0.5:
                data = mutate_json(rng, src)
            else:
                data = mutate_bytes(rng, src, pool)
            run_case(report, name, fn, data, adv)
        elif r < 15:
            name, fn, corpus, adv = targets[1]
            run_case(report, name, fn, mutate_bytes(rng, rng.choice(corpus), pool), adv)
        elif r < 17:
            name, fn, corpus, adv = targets[2]
            src = rng.choice(corpus)
            data = mutate_json(rng, src) if src[:1] == b"{" else mutate_bytes(rng, src, pool)
            run_case(report, name, fn, data, adv)
        elif r < 19:
            run_case(report, "validate_request", t.event, mutate_event(rng, rng.choice(events)))
        else:
            ev = mistype_event(rng, rng.choice(events))
            run_case(report, "validate_request_mistyped", t.event, ev, advisory=True)
    if hyp:
        _hypothesis_phase(t, report, hyp, seed)
    report.seconds = time.monotonic() - began
    return report


if __name__ == "__main__":  # quick look: python -m tests.chaos.fuzz
    import sys

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rep = fuzz(n)
    print(orjson.dumps(rep.as_dict(), option=orjson.OPT_INDENT_2).decode())
