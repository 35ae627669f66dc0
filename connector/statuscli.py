"""`connector status`: in-flight jobs read straight from the ledger topic.

No running sidecar is needed: every ledger partition is replayed with the adapters'
partition reader (a group-less consumer, so nothing is committed and no rebalance is
caused). With `--gemini` (an API key in the environment or `--gemini-base-url`) each
submitted job's `batchStats` is fetched for a progress column; otherwise it shows "-".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import orjson
from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from connector import config
from connector.adapters.gemini import Gemini
from connector.adapters.kafka import Admin, Producer
from connector.adapters.ledger import Ledger
from connector.adapters.security import kafka_client_extra
from connector.core.codec import Codec
from connector.core.observe import JobView, job_view
from connector.core.records import EntryState, JobProgress
from connector.errors import ConfigError, ConnectorError, ProviderError
from connector.redact import REDACTOR


def _settings(args: argparse.Namespace) -> config.Settings:
    """Settings from flags and environment, without `run`'s endpoint checks."""
    return config.load_values(os.environ, args)


def read_jobs(s: config.Settings) -> list[JobView]:
    """Every live ledger entry of every partition, oldest first within a partition."""
    extra = kafka_client_extra(s)  # OAUTHBEARER needs its token provider
    admin = Admin(s.bootstrap_servers, extra)
    try:
        n = admin.partitions(s.ledger)
    finally:
        admin.close()
    if n is None:
        raise ConnectorError(
            f"ledger topic {s.ledger!r} not found (check --group-id/--ledger-topic)"
        )
    # Only `load` is used: it reads with its own group-less consumer and never produces.
    ledger = Ledger(s.ledger, Codec(), cast(Producer, None), s.bootstrap_servers, extra)
    jobs = [job_view(e) for p in range(n) for e in ledger.load(p).values()]
    jobs.sort(key=lambda j: (j.partition, j.created_ms, j.job_id))
    return jobs


def with_progress(jobs: Sequence[JobView], gemini: Any) -> list[JobView]:
    """Jobs with the provider's `batchStats` where it answers (best effort)."""
    out = []
    for j in jobs:
        progress: JobProgress | None = None
        if j.provider_job and j.state == EntryState.SUBMITTED.value:
            try:
                progress = gemini.get(j.provider_job).progress
            except ProviderError:
                progress = None
        out.append(job_view_with(j, progress))
    return out


def job_view_with(j: JobView, progress: JobProgress | None) -> JobView:
    return replace(j, progress=progress)


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def table(jobs: Sequence[JobView], now_ms: int, bars: bool = False) -> Table:
    t = Table(title=f"in-flight jobs: {len(jobs)}", title_justify="left")
    for col in ("partition", "model", "kind", "requests", "state", "age", "provider job"):
        t.add_column(col, justify="right" if col in ("partition", "requests", "age") else "left")
    t.add_column("progress", min_width=12 if bars else None)
    for j in jobs:
        p = j.progress
        cell: Any
        if p is None or p.total <= 0:
            cell = "-"
        elif bars:
            done = p.succeeded + p.failed
            cell = Group(ProgressBar(total=p.total, completed=done, width=20), f"{done}/{p.total}")
        else:
            cell = f"{p.succeeded + p.failed}/{p.total} ({p.fraction:.0%})"
        t.add_row(
            str(j.partition),
            j.model,
            j.kind,
            str(j.requests),
            j.state,
            _age(j.age_s(now_ms)),
            j.provider_job or "-",
            cell,
        )
    return t


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="connector status", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    for flag in ("bootstrap_servers", "group_id", "ledger_topic", "gemini_base_url"):
        opt = next(o for o in config.OPTIONS if o.attr == flag)
        parser.add_argument(
            "--" + flag.replace("_", "-"), dest=flag, default=None, help=f"[env {opt.env}]"
        )
    parser.add_argument("--json", action="store_true", help="print the jobs as JSON")
    parser.add_argument("--watch", action="store_true", help="refresh live, with progress bars")
    parser.add_argument("--interval", type=float, default=5.0, help="--watch refresh seconds")
    parser.add_argument(
        "--gemini",
        action="store_true",
        help="fetch each job's progress (batchStats) from Gemini: needs GEMINI_API_KEY or "
        "--gemini-base-url",
    )
    return parser


def _gemini(s: config.Settings) -> Any:
    if not s.api_key and not s.gemini_base_url:
        raise ConnectorError("--gemini needs GEMINI_API_KEY or --gemini-base-url")
    return Gemini(
        api_key=s.api_key or "emulator",
        base_url=s.gemini_base_url or None,
        api_version=s.api_version,
        timeout_s=s.http_timeout_s,
    )


def snapshot(s: config.Settings, gemini: Any) -> list[JobView]:
    jobs = read_jobs(s)
    return with_progress(jobs, gemini) if gemini is not None else jobs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        s = _settings(args)
    except ConfigError as exc:
        print(f"connector status: configuration error: {exc}", file=sys.stderr)
        return 2
    REDACTOR.add(*s.secrets())
    console = Console()
    gemini = None
    try:
        gemini = _gemini(s) if args.gemini else None
        if not args.watch:
            jobs = snapshot(s, gemini)
            now_ms = int(time.time() * 1000)
            if args.json:
                doc = {"ledger": s.ledger, "jobs": [j.as_dict(now_ms) for j in jobs]}
                sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
            else:
                console.print(table(jobs, now_ms))
            return 0
        # Said once on stderr, so a user (or a test) knows Ctrl-C is now a clean stop.
        print(f"watching every {max(0.5, args.interval):g} s; Ctrl-C stops", file=sys.stderr)
        if not console.is_terminal:
            # Piped or logged: Live would draw only its last frame, at exit; print each
            # refresh instead, so the output shows every one.
            while True:
                jobs = snapshot(s, gemini)
                console.print(table(jobs, int(time.time() * 1000), bars=True))
                sys.stdout.flush()
                time.sleep(max(0.5, args.interval))
        with Live(Text("reading the ledger..."), console=console, auto_refresh=False) as live:
            while True:
                jobs = snapshot(s, gemini)
                live.update(table(jobs, int(time.time() * 1000), bars=True), refresh=True)
                time.sleep(max(0.5, args.interval))
    except KeyboardInterrupt:
        return 0
    except ConnectorError as exc:
        print(f"connector status: {REDACTOR.text(str(exc))}", file=sys.stderr)
        return 3
    finally:
        if gemini is not None:
            gemini.close()
