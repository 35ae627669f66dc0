"""Bytes of memory per in-flight request, for requests in SUBMITTED jobs.

Run: `.venv/bin/python bench/inflight_memory.py [--requests 200000] [--job 10000]`.
Prints figures; asserts nothing. `--root DIR` measures another checkout's package, e.g. an
earlier commit: `git archive COMMIT connector avro | tar -x -C DIR`.

Each measurement runs in a fresh interpreter (a subprocess of this script), so nothing the
parent allocated is counted. The child builds what a replica holds for its in-flight jobs,
the way recovery builds it: every ledger entry is encoded and decoded with the real codec
(one at a time, the bytes dropped at once), wrapped in a `Tracked` as SUBMITTED and added to
its `PartitionState` (the "covered" index included). It reports

- VmRSS growth of the process over the build, divided by the requests held;
- tracemalloc's traced growth over a second, identical build (slower, exact for Python
  objects, blind to allocator slack), divided likewise.

`--interleave K` spreads K batch keys over each partition's offsets (offset o goes to key
o mod K), the worst case for ranges: every offset of a job is its own range.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import connector
from connector.core.codec import Codec
from connector.core.partitions import Partitions, PartitionState, Tracked
from connector.core.records import BatchKey, EntryState, Kind, LedgerEntry

ROOT = Path(__file__).resolve().parent.parent


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _build(requests: int, job: int, partitions: int, interleave: int) -> object:
    codec = Codec()
    owned = Partitions()
    per_partition = requests // partitions
    for p in range(partitions):
        st = owned.setdefault(p, PartitionState())
        base = 1_000_000_000  # realistic offsets: big ints, as in a long-lived topic
        n_jobs = 0
        for k in range(interleave):
            offsets = list(range(base + k, base + per_partition, interleave))
            for i in range(0, len(offsets), job):
                chunk = offsets[i : i + job]
                job_id = f"p{p}-{chunk[0]}-bench{n_jobs}"
                n_jobs += 1
                entry = LedgerEntry(
                    job_id=job_id,
                    key=BatchKey(p, f"gemini-2.5-flash-{k}", Kind.GENERATE),
                    offsets=tuple(chunk),  # type: ignore[arg-type]
                    attempt=1,
                    display_name=f"bench:{job_id}",
                    state=EntryState.SUBMITTED,
                    use_file=False,
                    est_tokens=150 * len(chunk),
                    created_ms=1_700_000_000_000,
                    updated_ms=1_700_000_000_000,
                    provider_job=f"batches/{job_id}",
                    request_topic="llm.requests",
                )
                del chunk
                decoded = codec.decode_ledger(codec.encode_ledger(entry))
                del entry
                st.add(Tracked(decoded, due=0.0, lookup=False))
            del offsets
    return owned


def child(requests: int, job: int, partitions: int, interleave: int) -> dict[str, float]:
    # Warm up imports and the codec first so their memory is not charged to the requests.
    _build(job * partitions * interleave, job, partitions, interleave)
    gc.collect()
    before = _rss()
    held = _build(requests, job, partitions, interleave)
    gc.collect()
    rss = _rss() - before
    del held
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    held = _build(requests, job, partitions, interleave)
    gc.collect()
    traced, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del held
    return {
        "rss_per_request": rss / requests,
        "traced_per_request": (traced - base) / requests,
        "traced_peak_mb": (peak - base) / 1e6,
        "rss_growth_mb": rss / 1e6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--requests", type=int, default=200_000, help="in-flight requests in total")
    ap.add_argument("--job", type=int, default=10_000, help="requests per SUBMITTED job")
    ap.add_argument("--partitions", type=int, default=4, help="request partitions")
    ap.add_argument("--interleave", type=int, default=1, help="batch keys per partition")
    ap.add_argument("--root", default=str(ROOT), help="checkout whose package to measure")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        r = child(a.requests, a.job, a.partitions, a.interleave)
        print(json.dumps({**r, "package": str(Path(connector.__file__).parent)}))
        return
    cmd = [sys.executable, __file__, "--child", "--requests", str(a.requests),
           "--job", str(a.job), "--partitions", str(a.partitions),
           "--interleave", str(a.interleave)]  # fmt: skip
    # The checkout's package, not an installed one (the script's own folder is sys.path[0]).
    env = {**os.environ, "PYTHONPATH": a.root}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=a.root, env=env)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        f"{a.requests:,} requests in SUBMITTED jobs of {a.job:,} "
        f"({a.partitions} partitions, {a.interleave} key(s) per partition), {r['package']}"
    )
    print(f"  RSS growth:    {r['rss_growth_mb']:8.1f} MB  {r['rss_per_request']:8.1f} B/request")
    print(
        f"  traced (heap): {r['traced_per_request'] * a.requests / 1e6:8.1f} MB  "
        f"{r['traced_per_request']:8.1f} B/request  (peak {r['traced_peak_mb']:.1f} MB)"
    )


if __name__ == "__main__":
    main()
