"""Sample traffic for the compose stack: publish a few requests, print their results, exit.

docker-compose.yml runs it once, in the connector image, as ``python -m sample_producer``
(this file is mounted at /samples). It uses the project's own client (``connector.client``),
so what it sends is exactly what an upstream service would send. It reads the same settings
as the sidecar from the environment: ``KAFKA_BOOTSTRAP_SERVERS``, ``CONNECTOR_REQUEST_TOPIC``,
``CONNECTOR_RESULT_TOPIC``.

    python -m sample_producer [--requests N] [--timeout SECONDS]

Exits 0 once every request has a result, 1 if some have none before the timeout.
(``deploy/local/demo.py`` is the fuller tour, but it starts its own broker and emulator.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Mapping

from connector.client import RequestPublisher, ResultReader
from connector.core.records import Kind, ResultStatus


def samples(run: str, count: int) -> list[tuple[str, str, Kind, Mapping[str, object]]]:
    """(request id, model, kind, body): generate requests on two models, embeddings, one invalid."""
    out: list[tuple[str, str, Kind, Mapping[str, object]]] = []
    for i in range(count):
        text = f"Sample question {i}: why is the sky blue?"
        model = "gemini-2.5-flash" if i % 2 == 0 else "gemini-2.5-pro"
        body = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
        out.append((f"{run}-gen-{i}", model, Kind.GENERATE, body))
    out.append(
        (
            f"{run}-embed-0",
            "gemini-embedding-001",
            Kind.EMBED,
            {"content": {"parts": [{"text": "a sample document"}]}},
        )
    )
    # Invalid on purpose: it gets an error result (and a dead letter), so its sender hears back.
    out.append((f"{run}-invalid-0", "gemini-2.5-flash", Kind.GENERATE, {"contents": "nope"}))
    return out


def main(argv: list[str] | None = None, env: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6, help="generate requests to send")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for results")
    args = parser.parse_args(argv)
    bootstrap = env.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    requests = env.get("CONNECTOR_REQUEST_TOPIC", "llm.requests")
    results = env.get("CONNECTOR_RESULT_TOPIC", "llm.results")

    run = uuid.uuid4().hex[:8]  # results of earlier runs stay in the topic; ignore them
    batch = samples(run, args.requests)
    reader = ResultReader(bootstrap, results)
    pub = RequestPublisher(bootstrap, requests)
    try:
        for request_id, model, kind, body in batch:
            pub.publish(request_id, model, body, kind, metadata={"source": "sample-producer"})
        pub.flush()
        print(f"published {len(batch)} requests to {requests} on {bootstrap}", flush=True)
        pending = {request_id for request_id, *_ in batch}
        deadline = time.monotonic() + args.timeout
        while pending and time.monotonic() < deadline:
            for _, result in reader.poll(1.0):
                if result.request_id not in pending:
                    continue
                pending.discard(result.request_id)
                if result.status is ResultStatus.OK:
                    print(f"OK    {result.request_id} {result.model} {result.batch_job}")
                else:
                    error = result.error
                    detail = f"{error.status}: {error.message[:80]}" if error else ""
                    print(f"ERROR {result.request_id} {result.model} {detail}")
    finally:
        pub.close()
        reader.close()
    if pending:
        print(f"no result within {args.timeout:.0f}s for {sorted(pending)}", file=sys.stderr)
        return 1
    print(f"all {len(batch)} requests answered")
    return 0


if __name__ == "__main__":
    sys.exit(main())
