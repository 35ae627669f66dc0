"""The simulator's CI run: SIM_SEEDS seeds (2,000 by default), on as many processes as
cores. A failing seed is named with its violated invariant; replay it with
`python -m tests.sim --seed N`."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from tests.sim.run import quiet_logs, simulate

SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))
START = int(os.environ.get("SIM_START", "0"))


def _run(seeds: range) -> list[tuple[int, list[tuple[str, str]]]]:
    quiet_logs()
    return [(o.seed, o.violations) for s in seeds if not (o := simulate(s)).ok]


@pytest.mark.sim
@pytest.mark.slow
def test_every_seed_keeps_every_invariant() -> None:
    workers = max(1, min(4, os.cpu_count() or 1))
    chunks = [range(START + i, START + SEEDS, workers) for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        failed = sorted(f for part in pool.map(_run, chunks) for f in part)
    lines = [f"seed {seed}: {kind}: {detail}" for seed, v in failed for kind, detail in v[:1]]
    assert not failed, f"{len(failed)} of {SEEDS} seeds violated invariants:\n" + "\n".join(lines)
