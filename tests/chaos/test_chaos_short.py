"""The short chaos run in CI: every phase of `python -m tests.chaos.run --short`, 0 violations.

It starts its own broker (it must restart it), emulators and `connector run` replicas, so it
ignores KAFKA_BOOTSTRAP_SERVERS. A few minutes on 2 cores. The report lands in
.run/chaos/pytest-<time>/report.json; a failure lists every violation.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.chaos.run import SHORT, print_report, run_suite  # noqa: E402

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def test_short_chaos_run_has_no_violations() -> None:
    workdir = ROOT / ".run" / "chaos" / f"pytest-{time.strftime('%Y%m%d-%H%M%S')}"
    cfg = dataclasses.replace(SHORT, workdir=workdir)
    report = run_suite(cfg)
    (workdir / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print_report(report)
    assert report["summary"]["requests"] > 0
    assert not report["violations"], "\n".join(report["violations"])
