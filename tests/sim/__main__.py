"""`python -m tests.sim --seed N` replays one seed with its trace; `--seeds N` runs many."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter

from tests.sim.run import quiet_logs, simulate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__)
    ap.add_argument("--seed", type=int, help="replay this seed and print its trace")
    ap.add_argument("--seeds", type=int, default=100, help="run seeds START..START+N-1")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--traces", action="store_true", help="print each failing seed's trace")
    args = ap.parse_args(argv)
    quiet_logs()
    if args.seed is not None:
        out = simulate(args.seed)
        print(out.report())
        return 0 if out.ok else 1
    started = time.perf_counter()
    failed: Counter[str] = Counter()
    bad = 0
    for seed in range(args.start, args.start + args.seeds):
        out = simulate(seed)
        if not out.ok:
            bad += 1
            kinds = sorted({k for k, _ in out.violations})
            failed.update(kinds)
            tags = ",".join(out.suspects)
            print(f"seed {seed}: {', '.join(kinds)} [{tags}]: {out.violations[0][1]}", flush=True)
            if args.traces:
                print(out.report(), flush=True)
    took = time.perf_counter() - started
    print(
        f"{args.seeds} seeds in {took:.1f} s ({args.seeds / took:.1f} seeds/s): "
        f"{bad} violated {dict(failed)}"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
