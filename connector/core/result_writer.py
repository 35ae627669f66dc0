"""A hand-written Avro binary writer for ResultEvent (v2): the sidecar's per-result hot path.

`Codec.encode_result` through fastavro builds a dict per result and lets the generic
writer dispatch on every field's type and resolve the two record unions (`error`, `usage`):
~10.7 µs of CPU per typical result. This writer knows the schema and writes the same bytes
(Avro binary encoding: zig-zag varints, length-prefixed UTF-8, union branch index, map
blocks) in ~5.2 µs.

It is tied to one schema: `Codec` uses it only when the current result schema's Parsing
Canonical Form is the one below (`CANONICAL`), and falls back to fastavro otherwise. The
unit tests compare its output with fastavro's byte for byte on generated events.
"""

from __future__ import annotations

import struct

from connector.core.records import ResultEvent

_DOUBLE = struct.Struct("<d")

CANONICAL = (
    '{"name":"io.github.geminibatch.ResultEvent","type":"record","fields":['
    '{"name":"request_id","type":"string"},'
    '{"name":"status","type":{"name":"io.github.geminibatch.ResultStatus","type":"enum",'
    '"symbols":["OK","ERROR"]}},'
    '{"name":"model","type":"string"},'
    '{"name":"kind","type":{"name":"io.github.geminibatch.Kind","type":"enum",'
    '"symbols":["generate","embed"]}},'
    '{"name":"response_json","type":["null","string"]},'
    '{"name":"error","type":["null",{"name":"io.github.geminibatch.ErrorInfo","type":"record",'
    '"fields":[{"name":"code","type":"int"},{"name":"status","type":"string"},'
    '{"name":"message","type":"string"}]}]},'
    '{"name":"metadata","type":{"type":"map","values":"string"}},'
    '{"name":"batch_job","type":["null","string"]},'
    '{"name":"attempt","type":"int"},'
    '{"name":"usage","type":["null",{"name":"io.github.geminibatch.TokenUsage","type":"record",'
    '"fields":[{"name":"prompt_tokens","type":"long"},{"name":"candidates_tokens","type":"long"},'
    '{"name":"total_tokens","type":"long"}]}]},'
    '{"name":"cost_usd","type":["null","double"]},'
    '{"name":"request_created_ms","type":"long"},'
    '{"name":"completed_ms","type":"long"},'
    '{"name":"source_partition","type":"int"},'
    '{"name":"source_offset","type":"long"}]}'
)
"""The Parsing Canonical Form of avro/result/v2.avsc, the only schema this writer writes."""

_SMALL = [bytes((n,)) for n in range(128)]
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_STATUS_INDEX = {"OK": b"\x00", "ERROR": b"\x02"}  # enum index, already zig-zagged
_KIND_INDEX = {"generate": b"\x00", "embed": b"\x02"}
_NULL = b"\x00"  # union branch 0 (null)
_SECOND = b"\x02"  # union branch 1


def _long(n: int) -> bytes:
    """Zig-zag varint of a 64-bit integer (Avro `int` and `long` share the encoding)."""
    if not _LONG_MIN <= n <= _LONG_MAX:
        raise ValueError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:
        return _SMALL[z]
    out = bytearray()
    while z >= 0x80:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _int(n: int) -> bytes:
    if not _INT_MIN <= n <= _INT_MAX:
        raise ValueError(f"{n} does not fit an Avro int")
    return _long(n)


def _string(s: str) -> bytes:
    b = s.encode()
    n = len(b)
    return (_SMALL[n << 1] if n < 64 else _long(n)) + b


def write_result(r: ResultEvent) -> bytes:
    """The Avro binary body of `r` under ResultEvent v2 (no framing)."""
    out = [
        _string(r.request_id),
        _STATUS_INDEX[r.status],
        _string(r.model),
        _KIND_INDEX[r.kind],
    ]
    app = out.append
    if r.response_json is None:
        app(_NULL)
    else:
        app(_SECOND)
        app(_string(r.response_json))
    err = r.error
    if err is None:
        app(_NULL)
    else:
        app(_SECOND)
        app(_int(err.code))
        app(_string(err.status))
        app(_string(err.message))
    meta = r.metadata
    if meta:
        app(_long(len(meta)))
        for k, v in meta.items():
            app(_string(k))
            app(_string(v))
    app(_NULL)  # end of the map's blocks
    if r.batch_job is None:
        app(_NULL)
    else:
        app(_SECOND)
        app(_string(r.batch_job))
    app(_int(r.attempt))
    usage = r.usage
    if usage is None:
        app(_NULL)
    else:
        app(_SECOND)
        app(_long(usage.prompt_tokens))
        app(_long(usage.candidates_tokens))
        app(_long(usage.total_tokens))
    if r.cost_usd is None:
        app(_NULL)
    else:
        app(_SECOND)
        app(_DOUBLE.pack(r.cost_usd))
    app(_long(r.request_created_ms))
    app(_long(r.completed_ms))
    app(_int(r.source_partition))
    app(_long(r.source_offset))
    return b"".join(out)
