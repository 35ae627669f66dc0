"""RSS per request in flight, in a process of its own (run by run.py; asserts nothing).

`python bench/inflight.py BOOTSTRAP TOPIC BATCH N`: starts the sidecar on the (empty)
request topic against a Gemini that accepts every job and never finishes one, waits until
it owns its partitions and reports its idle RSS (`IDLE <MB>` on stdout). The parent then
publishes N requests; once all N are in SUBMITTED jobs (taken in, INTENTs and SUBMITTED
entries acked, nothing open), the process reports its RSS again as one JSON line
(`DONE {...}`) and exits. Only the sidecar, its Kafka clients and this script live here.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import sys
import threading
import time
import uuid

from common import HeldGemini, TimedSidecar, current_rss_mb, sidecar_settings

from connector.logs import configure as configure_logs
from connector.testing import wait_until


def main() -> int:
    bootstrap, topic, batch, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    configure_logs("ERROR", "console")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    run = uuid.uuid4().hex[:8]
    settings = sidecar_settings(
        bootstrap,
        topic,
        f"{topic}.results",
        f"{topic}.dlq",
        f"bench-inflight-{run}",
        "http://127.0.0.1:9",
        batch,
        5.0,
        max_jobs=10**6,
        max_waiting_intents=10**6,
        poll_initial_s=3600,  # never poll the held jobs: nothing to learn from them
        poll_max_s=3600,
    )
    gemini = HeldGemini("bench", "http://127.0.0.1:9")
    sc = TimedSidecar(settings, gemini)
    thread = threading.Thread(target=sc.run, name="sidecar", daemon=True)
    thread.start()
    alive = thread.is_alive
    try:
        wait_until(
            lambda: not alive() or (sc.running and sc.status().get("partitions")),
            timeout=120,
            message="the sidecar owns its partitions",
        )
        # Idle means a few quiet passes after the assignment, not a guessed number of seconds.
        passes = sc.pass_times.count
        wait_until(lambda: not alive() or sc.pass_times.count >= passes + 5, timeout=60)
    except TimeoutError:
        print("FAILED no partitions", flush=True)
        return 1
    if not alive():
        print("FAILED sidecar died", flush=True)
        return 1
    gc.collect()
    idle = current_rss_mb()
    print(f"IDLE {idle:.2f}", flush=True)

    t_first: float | None = None

    def all_held() -> bool:
        nonlocal t_first
        st = sc.status()
        if t_first is None and st.get("consumed", 0) > 0:
            t_first = time.monotonic()
        return not alive() or (
            st.get("consumed", 0) >= n
            and st["open_requests"] == 0
            and st["intents"] == 0
            and sum(gemini.sizes) >= n
        )

    try:
        wait_until(all_held, timeout=3600, interval=0.2, message=lambda: f"status {sc.status()}")
    except TimeoutError as exc:
        print(f"FAILED {exc}", flush=True)
        return 1
    if not alive():
        print("FAILED sidecar died", flush=True)
        return 1
    took = time.monotonic() - (t_first or time.monotonic())
    # Steady state: the sidecar's first idle trim after the burst (it gives the intake's
    # freed heap back to the OS, at most every 5 s), as it would be minutes later. Without
    # glibc there is no trim: measure anyway after the deadline.
    trims = sc.heap.trims
    with contextlib.suppress(TimeoutError):
        wait_until(lambda: sc.heap.trims > trims, timeout=15, interval=0.1)
    gc.collect()
    held = current_rss_mb()
    st = sc.status()
    sc.stop()
    thread.join(timeout=60)
    print(
        "DONE "
        + json.dumps(
            {
                "idle_mb": idle,
                "held_mb": held,
                "n": n,
                "jobs": len(gemini.sizes),
                "submitted_jobs": st["submitted"],
                "intake_s": took,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
