"""A chunk of successful results built, encoded, sent and counted, priced as each result is
built (what the tracker does) or left for the sink and the metrics to price (what it did):
a benchmark, it asserts nothing.

Run: `.venv/bin/python bench/price_once.py [--chunk 1000] [--rounds 60]`.

Both ways run in one process, rounds interleaved, on the real `success_results`, `Sink`
(Avro encoding, headers, partitioning) and `Telemetry`; the producer is a null one, so the
figure is the sidecar's own per-result Python, without the client's `send`. Prints each
way's median per chunk.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from prometheus_client import CollectorRegistry

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.partitions import Stats
from connector.core.records import (
    BatchKey,
    EntryState,
    Kind,
    LedgerEntry,
    OutputItem,
    RequestEvent,
)
from connector.core.results import Original, correlation_key, success_results
from connector.metrics import Telemetry
from connector.stages.sink import Limits, Sink


class NullProducer:
    """Takes every record and keeps none."""

    def send(self, *args: Any, **kwargs: Any) -> None:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()

    settings = Settings(gemini_base_url="http://127.0.0.1:9", api_key="unused")
    telemetry = Telemetry(settings, registry=CollectorRegistry())
    sink = Sink(
        settings,
        NullProducer(),  # type: ignore[arg-type]
        Codec(),
        Stats(),
        obs=telemetry,
        limits=Limits(result_partitions=12),
    )
    key = BatchKey(0, "gemini-2.5-flash", Kind.GENERATE)
    offsets = tuple(range(args.chunk))
    entry = LedgerEntry(
        job_id="p0-bench",
        key=key,
        offsets=offsets,  # type: ignore[arg-type]
        attempt=1,
        display_name="bench",
        state=EntryState.SUBMITTED,
        use_file=False,
        est_tokens=0,
        created_ms=0,
        updated_ms=0,
    )
    originals = {
        o: Original(
            0,
            o,
            f"key-{o}".encode(),
            RequestEvent(f"req-{o}", key.model, key.kind, "{}", metadata={"tenant": "t"}),
        )
        for o in offsets
    }
    outputs = [
        OutputItem(
            correlation_key(o),
            {
                "candidates": [{"content": {"parts": [{"text": f"answer {o}"}]}}],
                "usageMetadata": {
                    "promptTokenCount": 120,
                    "candidatesTokenCount": 40,
                    "totalTokenCount": 190,
                },
            },
            None,
        )
        for o in offsets
    ]

    def chunk(priced: bool) -> float:
        began = time.perf_counter()
        out = success_results(
            entry, originals, outputs, "batches/b", 1, price=sink.price if priced else None
        )
        sink.results(out)
        return time.perf_counter() - began

    later, built = [], []
    for _ in range(args.rounds):
        later.append(chunk(False))
        built.append(chunk(True))
    a, b = statistics.median(later) * 1e3, statistics.median(built) * 1e3
    print(
        f"{args.chunk} results per chunk, median of {args.rounds}: priced by the sink and "
        f"again by the metrics {a:.1f} ms, priced as built {b:.1f} ms ({(a - b) / a:.0%} less)"
    )


if __name__ == "__main__":
    main()
