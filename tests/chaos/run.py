"""The chaos suite: `python -m tests.chaos.run --short` (or `--long`), from the repository root.

    python -m tests.chaos.run --short                       # ~2,000 requests, a few minutes
    python -m tests.chaos.run --long --requests 20000 --duration 600 --replicas 3
    python -m tests.chaos.run --short --guarantee exactly_once   # read_committed, 0 duplicates
    python -m tests.chaos.run --short --phases fuzz,hostile      # a subset

It starts its own broker (restartable: same port, same data dir) under --workdir, one
emulator process per phase, and `connector run` replicas; prints a table of figures, writes
them as JSON (--report, default <workdir>/report.json) and exits 1 on any violation of the
guarantees (docs/durability.md): a lost request, a job paid twice, a conflicting or wrong
terminal result, a crash on hostile input, a leaked secret, duplicates in exactly-once mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .checks import PhaseResult
from .fuzz import fuzz
from .infra import ROOT, Broker, log
from .scenarios import (
    Config,
    Shared,
    broker_and_partitions,
    fault_storm,
    hostile_input,
    kills_and_stalls,
)
from .security import security

SHORT = Config()
LONG = dataclasses.replace(
    SHORT,
    requests=20_000,
    duration_s=600.0,
    replicas=3,
    partitions=8,
    kills=24,
    stalls=6,
    broker_restarts=2,
    partition_requests=2000,
    storm_requests=2000,
    hostile_records=1000,
    fuzz_cases=120_000,
    settle_s=120.0,
)
ALL_PHASES = ("fuzz", "kills", "broker", "storm", "hostile", "security")
BROKER_PHASES = {"kills", "broker", "storm", "hostile", "security"}


def fuzz_phase(cfg: Config) -> PhaseResult:
    res = PhaseResult("fuzz")
    rep = fuzz(cfg.fuzz_cases, seed=cfg.seed)
    res.figures.update(rep.as_dict())
    for c in rep.crashes.values():
        res.violations.append(
            f"decoder crash: {c.target} raised {c.exc_type} at {c.where} ({c.count} cases; "
            f"{c.message[:120]}; input starts {c.sample_hex[:48]})"
        )
    for s in rep.slow[:3]:
        res.violations.append(f"slow input: {s['target']} took {s['seconds']} s")
    for c in rep.advisory.values():
        res.notes.append(
            f"advisory ({c.target}): {c.exc_type} at {c.where} ({c.count} cases): {c.message[:100]}"
        )
    return res


def code_version() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "connector"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return rev + ("+dirty-connector" if dirty else "")


def run_suite(cfg: Config) -> dict[str, Any]:
    """Run the selected phases; return the report (figures, violations, notes)."""
    cfg.workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    shared = Shared()
    results: list[PhaseResult] = []
    broker: Broker | None = None
    phases = [p for p in ALL_PHASES if p in cfg.phases]
    try:
        for name in phases:
            if name in BROKER_PHASES and broker is None:
                log("starting the broker")
                broker = Broker(cfg.workdir / "kafka")
                broker.start()
            log(f"phase {name}")
            t0 = time.monotonic()
            try:
                if name == "fuzz":
                    res = fuzz_phase(cfg)
                elif name == "kills":
                    assert broker is not None
                    res = kills_and_stalls(cfg, broker, shared)
                elif name == "broker":
                    assert broker is not None
                    res = broker_and_partitions(cfg, broker, shared)
                elif name == "storm":
                    assert broker is not None
                    res = fault_storm(cfg, broker, shared)
                elif name == "hostile":
                    assert broker is not None
                    res = hostile_input(cfg, broker, shared)
                else:
                    res = security(cfg, broker, shared)
            except Exception as exc:
                res = PhaseResult(name)
                res.violations.append(f"phase failed to complete: {exc!r}")
                res.notes.append(traceback.format_exc()[-2000:])
            res.figures["phase_s"] = round(time.monotonic() - t0, 1)
            results.append(res)
            log(f"phase {name}: {len(res.violations)} violations in {res.figures['phase_s']} s")
    finally:
        for em in shared.emulators:
            em.close()
        if broker is not None:
            broker.stop()
    report = {
        "code_version": code_version(),
        "config": {
            k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(cfg).items()
        },
        "seconds": round(time.monotonic() - began, 1),
        "summary": summary(results, cfg),
        "phases": [r.as_dict() for r in results],
        "violations": [f"{r.name}: {v}" for r in results for v in r.violations],
    }
    return report


def summary(results: list[PhaseResult], cfg: Config) -> dict[str, Any]:
    def total(key: str) -> int:
        return sum(int(r.figures.get(key) or 0) for r in results)

    return {
        "guarantee": cfg.guarantee,
        "requests": total("requests"),
        "replicas": max([int(r.figures.get("replicas") or 0) for r in results] or [0]),
        "kills": total("kills"),
        "stalls": total("stalls"),
        "broker_restarts": total("broker_restarts"),
        "partition_increases": sum(1 for r in results if "partitions_after" in r.figures),
        "lost": total("lost"),
        "paid_twice": total("paid_twice_display_names") + total("paid_twice_requests"),
        "duplicate_records": total("duplicate_records"),
        "fuzz_cases": total("cases"),
        "fuzz_crashes": total("crash_count"),
        "violations": sum(len(r.violations) for r in results),
    }


def print_report(report: dict[str, Any]) -> None:
    s = report["summary"]
    print()
    print(
        f"chaos suite, code {report['code_version']}, {report['seconds']:.0f} s, "
        f"guarantee {s['guarantee']}"
    )
    print()
    cols = [
        "phase",
        "requests",
        "lost",
        "paid twice",
        "dup records",
        "kills",
        "stalls",
        "broker rst",
        "violations",
        "s",
    ]
    rows = []
    for p in report["phases"]:
        f = p["figures"]
        rows.append(
            [
                p["name"],
                f.get("requests", f.get("cases", "")),
                f.get("lost", ""),
                (f.get("paid_twice_display_names", 0) or 0) + (f.get("paid_twice_requests", 0) or 0)
                if "lost" in f
                else "",
                f.get("duplicate_records", ""),
                f.get("kills", ""),
                f.get("stalls", ""),
                f.get("broker_restarts", ""),
                len(p["violations"]),
                f.get("phase_s", ""),
            ]
        )
    rows.append(
        [
            "total",
            s["requests"],
            s["lost"],
            s["paid_twice"],
            s["duplicate_records"],
            s["kills"],
            s["stalls"],
            s["broker_restarts"],
            s["violations"],
            report["seconds"],
        ]
    )
    widths = [max(len(str(c)) for c in col) for col in zip(cols, *rows, strict=True)]
    for row in [cols, *rows]:
        print(
            "  ".join(
                str(c).rjust(w) if i else str(c).ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    print()
    print(f"fuzz cases {s['fuzz_cases']}, decoder crashes {s['fuzz_crashes']}")
    if report["violations"]:
        print(f"\n{len(report['violations'])} VIOLATIONS:")
        for v in report["violations"]:
            print(f"  - {v}")
    notes = [
        f"{p['name']}: {n}"
        for p in report["phases"]
        for n in p["notes"]
        if not n.startswith("Traceback")
    ]
    if notes:
        print("\nnotes:")
        for n in notes:
            print(f"  - {n[:400]}")
    print()


def parse(argv: list[str] | None = None) -> tuple[Config, Path | None]:
    ap = argparse.ArgumentParser(prog="python -m tests.chaos.run", description=__doc__)
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help="the CI-sized run (default)")
    size.add_argument("--long", action="store_true", help="the release-sized run")
    ap.add_argument("--requests", type=int, help="requests in the kills-and-stalls phase")
    ap.add_argument("--duration", type=float, help="seconds the requests are spread over")
    ap.add_argument("--replicas", type=int, help="sidecar processes in the group")
    ap.add_argument("--partitions", type=int, help="request partitions (kills phase, >= 6)")
    ap.add_argument("--kills", type=int, help="SIGKILLs (each replica restarted)")
    ap.add_argument("--stalls", type=int, help="SIGSTOP/SIGCONT stalls past max.poll.interval")
    ap.add_argument("--max-poll-interval-ms", type=int, help="also the session timeout")
    ap.add_argument("--broker-restarts", type=int)
    ap.add_argument("--partition-requests", type=int, help="requests in the broker phase")
    ap.add_argument("--storm-requests", type=int)
    ap.add_argument("--hostile-records", type=int)
    ap.add_argument("--fuzz-cases", type=int)
    ap.add_argument("--settle", type=float, dest="settle_s", help="seconds to wait for results")
    ap.add_argument(
        "--guarantee",
        choices=["at_least_once", "exactly_once"],
        help="CONNECTOR_PROCESSING_GUARANTEE for the replicas; exactly_once reads "
        "results read_committed and allows no duplicate",
    )
    ap.add_argument("--phases", help=f"comma-separated subset of {','.join(ALL_PHASES)}")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--workdir", type=Path, help="default .run/chaos/<time>")
    ap.add_argument("--report", type=Path, help="JSON report (default <workdir>/report.json)")
    a = ap.parse_args(argv)
    cfg = LONG if a.long else SHORT
    overrides: dict[str, Any] = {}
    for name in (
        "requests",
        "replicas",
        "partitions",
        "kills",
        "stalls",
        "max_poll_interval_ms",
        "broker_restarts",
        "partition_requests",
        "storm_requests",
        "hostile_records",
        "fuzz_cases",
        "settle_s",
        "guarantee",
        "seed",
    ):
        val = getattr(a, name)
        if val is not None:
            overrides[name] = val
    if a.duration is not None:
        overrides["duration_s"] = a.duration
    if a.phases:
        chosen = tuple(p.strip() for p in a.phases.split(",") if p.strip())
        unknown = set(chosen) - set(ALL_PHASES)
        if unknown:
            ap.error(f"unknown phases {sorted(unknown)}")
        overrides["phases"] = chosen
    overrides["workdir"] = (
        a.workdir or ROOT / ".run" / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    ).resolve()
    return dataclasses.replace(cfg, **overrides), a.report


def main(argv: list[str] | None = None) -> int:
    cfg, report_path = parse(argv)
    report = run_suite(cfg)
    path = report_path or cfg.workdir / "report.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    print(f"report: {path}")
    return 1 if report["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
