"""Peak memory of delivering one big results file: a benchmark, it asserts nothing.

Run: `.venv/bin/python bench/big_results.py [--mb 200] [--response-kb 100] [--chunk N]`.

1. The Gemini Batch API emulator runs in a *subprocess* (its memory is not counted), on a
   real socket, with no delays. The sidecar runs in this process, on `connector.testing`'s
   in-memory Kafka and the real `Gemini` adapter and SDK over HTTP.
2. N requests, each asking the emulator for a ~`--response-kb` KB answer
   (`EMULATOR_BIG_<n>` in the prompt), so the job's results file is ~`--mb` MB. They go
   into one file job (batch_max_requests=N); the sidecar creates it, the emulator runs it.
3. Once the job has SUCCEEDED: garbage-collect, note VmRSS, reset the peak (VmHWM, by
   writing 5 to /proc/self/clear_refs), and run the loop until the job is delivered (every
   result produced and flushed, then the ledger entry retired). Results are encoded and
   produced as usual, but the in-memory results topic counts them instead of keeping them
   (a real broker would not keep them in this process either).
4. Prints the peak RSS growth during delivery, its duration, the passes and chunks, and,
   with `--old`, the growth of what the sidecar did before (download to bytes, parse the
   whole file into a list) on the same file, for comparison.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from connector.adapters.gemini import Gemini  # noqa: E402
from connector.core.jsonl import parse_output_file  # noqa: E402
from connector.core.records import JobState  # noqa: E402
from connector.testing import TestHarness, harness, wait_until  # noqa: E402


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux 4.0+)."""
    Path("/proc/self/clear_refs").write_text("5")


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connector.emulator",
            "--port=0",
            "--queue-delay-s=0",
            "--processing-delay-s=0",
            "--per-request-delay-s=0",
            "--enqueued-token-cap=1000000000000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, match.group(1)


def count_results(h: TestHarness) -> dict[str, int]:
    """Results are counted, not kept: the process would not hold them with a real broker."""
    seen = {"results": 0, "bytes": 0}
    append = h.kafka.append
    topic = h.settings.result_topic

    def counting(t: str, value: bytes | None, *args: Any, **kw: Any) -> Any:
        if t != topic:
            return append(t, value, *args, **kw)
        seen["results"] += 1
        seen["bytes"] += len(value or b"")
        return None

    h.kafka.append = counting  # type: ignore[method-assign]
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the results file (MB)")
    ap.add_argument("--response-kb", type=int, default=100, help="size of one response (KB)")
    ap.add_argument("--chunk", type=int, default=0, help="results per chunk (default: 5,000)")
    ap.add_argument("--old", action="store_true", help="also measure download+parse whole")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    n = max(1, args.mb * 1024 // args.response_kb)
    proc, url = start_emulator()
    try:
        gemini = Gemini(api_key="bench", base_url=url, timeout_s=600)
        h = harness(
            gemini=gemini,
            batch_max_requests=n,
            batch_max_wait_s=3_600,
            batch_inline_max_bytes=0,
            poll_initial_s=0.5,
            token_budget=10**12,
        )
        if args.chunk:
            h.sidecar.tracker.chunk_requests = args.chunk
        seen = count_results(h)
        big = f"EMULATOR_BIG_{args.response_kb * 1024}"
        for i in range(n):
            h.publish(f"big-{i}", f"{big} request {i}")
        h.consumer.assign(0)
        h.run_until(lambda: h.sidecar.stats.jobs_created == 1, max_passes=n, advance_s=0.0)
        [t] = h.sidecar.owned[0].jobs.values()
        job = t.entry.provider_job
        assert job is not None
        t0 = time.monotonic()
        wait_until(lambda: gemini.get(job).state is JobState.SUCCEEDED, timeout=3_600, interval=1.0)
        remote = gemini.get(job)
        print(
            f"results file: {n:,} responses of ~{args.response_kb} KB, "
            f"{remote.responses_file}, generated in {time.monotonic() - t0:.1f} s"
        )

        if args.old:  # before delivery: the file is deleted once delivered
            assert remote.responses_file is not None
            gc.collect()
            base = rss_mb()
            reset_peak()
            items = list(parse_output_file(gemini.download(remote.responses_file)))
            peak = rss_mb("VmHWM")
            count = len(items)
            del items
            print(
                f"before this change (download to bytes, parse whole, {count:,} items): "
                f"peak growth {peak - base:,.0f} MB"
            )
        gc.collect()
        base = rss_mb()
        reset_peak()
        passes, t0 = 0, time.monotonic()
        while h.ledger.live(0):
            h.step(advance_s=1.0)
            passes += 1
        took = time.monotonic() - t0
        peak = rss_mb("VmHWM")
        print(
            f"delivered: {seen['results']:,} results ({seen['bytes'] / 2**20:,.0f} MB encoded) "
            f"in {took:.1f} s, {passes} passes"
        )
        print(
            f"RSS before delivery: {base:,.0f} MB; peak during: {peak:,.0f} MB; "
            f"peak growth: {peak - base:,.0f} MB"
        )
        figures = {
            "file_mb": args.mb,
            "responses": n,
            "results": seen["results"],
            "delivery_s": took,
            "passes": passes,
            "rss_before_mb": base,
            "peak_growth_mb": peak - base,
        }
        print("RESULT " + json.dumps(figures), flush=True)  # read by bench/run.py
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
