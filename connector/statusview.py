"""/status shaped like Kafka Connect's status API, and the HTML page at / of the health port.

Both are pure functions of what the loop published (the status counters and the frozen
`View`), so the health thread never touches live state. The JSON keeps the earlier top-level
keys (`partitions`, `open_requests`, `intents`, `submitted` and the counters) next to Kafka
Connect's `name`, `connector`, `tasks` (one per owned request partition) and adds `jobs`,
`quota` and `last_error`.
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping
from typing import Any

from connector.core.observe import View


def connector_state(ready: bool, alive: bool) -> str:
    if not alive:
        return "FAILED"
    return "RUNNING" if ready else "UNASSIGNED"


def connect_status(
    name: str,
    worker_id: str,
    status: Mapping[str, Any],
    view: View | None,
    ready: bool,
    alive: bool,
    last_error: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The status document (see module doc); `status` is the loop's published counters."""
    state = connector_state(ready, alive)
    now_ms = view.now_ms if view is not None else int(time.time() * 1000)
    tasks: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    quota: dict[str, Any] = {}
    if view is not None:
        task_state = "PAUSED" if view.paused and state == "RUNNING" else state
        for p in view.partitions:
            tasks.append(
                {
                    "id": p.partition,
                    "state": task_state,
                    "worker_id": worker_id,
                    "committed_offset": p.committed,
                    "end_offset": p.highwater,
                    "lag": p.lag,
                    "jobs": p.jobs,
                }
            )
        jobs = [j.as_dict(now_ms) for j in view.jobs]
        quota = {
            "max_jobs": view.max_jobs,
            "models": {
                m: {
                    "enqueued_tokens": view.enqueued_tokens.get(m, 0),
                    "token_budget": view.token_caps.get(m, 0),
                }
                for m in sorted(set(view.token_caps) | set(view.enqueued_tokens))
            },
        }
    return {
        **status,
        "name": name,
        "type": "source",
        "connector": {"state": state, "worker_id": worker_id},
        "tasks": tasks,
        "jobs": jobs,
        "quota": quota,
        "last_error": dict(last_error) if last_error else None,
    }


def _bar(fraction: float | None, label: str) -> str:
    if fraction is None:
        return '<span class="none">-</span>'
    pct = max(0.0, min(1.0, fraction)) * 100
    return (
        f'<div class="bar" title="{html.escape(label)}"><div class="fill" '
        f'style="width:{pct:.1f}%"></div><span>{html.escape(label)}</span></div>'
    )


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;
text-align:left}th{background:#f4f4f4}
.bar{position:relative;width:12em;height:1.2em;background:#eee;border-radius:3px}
.fill{position:absolute;left:0;top:0;bottom:0;background:#4a90d9;border-radius:3px}
.bar span{position:relative;padding-left:.4em;font-size:.85em}
.state{font-weight:bold}.RUNNING{color:#2a7}.FAILED{color:#c33}.PAUSED,.UNASSIGNED{color:#c80}
.none{color:#999}code{font-size:.9em}
"""


def html_page(doc: Mapping[str, Any], refresh_s: int = 5) -> str:
    """A self-contained page (no external assets) rendering `connect_status(...)`."""
    e = html.escape
    conn = doc.get("connector", {})
    state = str(conn.get("state", ""))
    rows_tasks = "".join(
        f"<tr class='task'><td>{t['id']}</td><td class='state {e(str(t['state']))}'>"
        f"{e(str(t['state']))}</td><td>{t['committed_offset']}</td>"
        f"<td>{'-' if t['lag'] is None else t['lag']}</td><td>{t['jobs']}</td></tr>"
        for t in doc.get("tasks", [])
    )
    rows_jobs = []
    for j in doc.get("jobs", []):
        p = j.get("progress")
        if p:
            bar = _bar(p["fraction"], f"{p['succeeded'] + p['failed']}/{p['total']}")
        else:
            bar = _bar(None, "")
        rows_jobs.append(
            f"<tr class='job' data-job-id='{e(j['job_id'])}'><td>{j['partition']}</td>"
            f"<td>{e(j['model'])}</td><td>{e(j['kind'])}</td><td>{j['requests']}</td>"
            f"<td>{e(j['state'])}</td><td>{_age(j['age_s'])}</td>"
            f"<td><code>{e(j['provider_job'] or '-')}</code></td><td>{bar}</td></tr>"
        )
    quota = doc.get("quota") or {}
    rows_quota = "".join(
        f"<tr class='model'><td>{e(m)}</td><td>"
        + _bar(
            q["enqueued_tokens"] / q["token_budget"] if q["token_budget"] else None,
            f"{q['enqueued_tokens']:,} / {q['token_budget']:,} tokens",
        )
        + "</td></tr>"
        for m, q in (quota.get("models") or {}).items()
    )
    err = doc.get("last_error")
    err_html = (
        f"<p>Last problem: <code>{e(str(err.get('level', '')))}</code> "
        f"{e(str(err.get('event', '')))} <span class='none'>{e(str(err.get('at', '')))}</span></p>"
        if err
        else "<p class='none'>No errors logged.</p>"
    )
    counters = " · ".join(
        f"{k.replace('_', ' ')}: {doc[k]}"
        for k in (
            "consumed",
            "open_requests",
            "intents",
            "submitted",
            "results_ok",
            "results_error",
            "dead_lettered",
        )
        if k in doc
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh_s}">
<title>gemini-batch-connector: {e(str(doc.get("name", "")))}</title>
<style>{_STYLE}</style></head><body>
<h1>{e(str(doc.get("name", "")))} <span class="state {e(state)}" id="state">{e(state)}</span></h1>
<p>worker <code>{e(str(conn.get("worker_id", "")))}</code> · {e(counters)}</p>
{err_html}
<h2>Partitions</h2>
<table id="tasks"><tr><th>partition</th><th>state</th><th>committed</th><th>lag</th>
<th>jobs</th></tr>{rows_tasks}</table>
<h2>Jobs in flight ({len(rows_jobs)})</h2>
<table id="jobs"><tr><th>partition</th><th>model</th><th>kind</th><th>requests</th><th>state</th>
<th>age</th><th>provider job</th><th>progress</th></tr>{"".join(rows_jobs)}</table>
<h2>Token budget (this replica's share, max {quota.get("max_jobs", "-")} jobs)</h2>
<table id="quota"><tr><th>model</th><th>enqueued</th></tr>{rows_quota}</table>
<p class="none">JSON: <a href="/status">/status</a> · metrics: <a href="/metrics">/metrics</a>
· refreshes every {refresh_s}s</p>
</body></html>
"""
