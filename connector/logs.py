"""structlog set-up: JSON lines for machines, or a console renderer for people.

In JSON mode every line on stderr is one JSON object, including stdlib records from
kafka-python, httpx and google-genai (their logger name kept in `logger`). Each carries
`severity` (Cloud Logging's field: without it a stderr line counts as an ERROR) next to
`level`. A Python warning is one event, "python warning", with its `category` and
`message` as fields (logger `py.warnings`), never an event named after its file and text.
Every line goes through the redactor (`connector.redact`), so the API key, Kafka secrets
and URL credentials never reach it. kafka-python reports a broker it cannot reach at ERROR,
once per attempt: its ERRORs become WARNINGs, and a repeated message is logged at most
once per `_REPEAT_S` with a count. The latest WARNING or ERROR is kept for `/status`
(`last_error`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import structlog

from connector.redact import REDACTOR

_REPEAT_S = 30.0
_LIBRARIES = ("kafka", "httpx", "httpx2", "httpcore", "google_genai", "google", "urllib3")

_last: dict[str, dict[str, Any]] = {}
_last_lock = threading.Lock()


def last_error() -> dict[str, Any] | None:
    """The most recent WARNING or ERROR line (redacted), or None."""
    with _last_lock:
        return dict(_last["problem"]) if _last else None


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for k, v in event.items():
        if k not in ("_record", "_from_structlog"):
            event[k] = REDACTOR.value(v)
    return event


def _remember(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    level = str(event.get("level", "")).lower()
    if level in ("warning", "error", "critical", "exception"):
        problem = {
            "level": level,
            "event": str(event.get("event", "")),
            "logger": event.get("logger"),
            "at": event.get("timestamp") or datetime.now(UTC).isoformat(),
        }
        if "error" in event:
            problem["error"] = str(event["error"])
        with _last_lock:
            _last["problem"] = problem
    return event


class LibraryFilter(logging.Filter):
    """Library ERRORs about brokers become WARNINGs; repeats are collapsed with a count."""

    def __init__(self, repeat_s: float = _REPEAT_S) -> None:
        super().__init__()
        self._repeat_s = repeat_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if not name.startswith(_LIBRARIES) and name != "py.warnings":
            return True
        if record.levelno >= logging.ERROR and name.startswith("kafka"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        key = (name, str(record.msg))
        now = time.monotonic()
        with self._lock:
            first, suppressed = self._seen.get(key, (0.0, 0))
            if now - first < self._repeat_s:
                self._seen[key] = (first, suppressed + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # bounded: forget the oldest templates
                for k in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[k]
        if suppressed:
            record.suppressed_repeats = suppressed
        return True


_SEVERITY = {"exception": "ERROR", "warn": "WARNING", "notset": "DEFAULT"}


def _severity(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Cloud Logging's `severity` (DEBUG, INFO, WARNING, ERROR, CRITICAL) from `level`."""
    level = str(event.get("level", "")).lower()
    event["severity"] = _SEVERITY.get(level, level.upper() or "DEFAULT")
    return event


_saved: dict[str, Any] = {}
"""`warnings.showwarning` as it was before `capture_warnings(True)`, under "showwarning"."""


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning`, as a structured event: what warned and where, as fields."""
    if file is not None:  # someone asked for a stream explicitly: leave it alone
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    structlog.get_logger("py.warnings").warning(
        "python warning",
        category=category.__name__,
        message=str(message),
        source=f"{filename}:{lineno}",
    )


def capture_warnings(enable: bool) -> None:
    """Route Python warnings to the log as structured events (or stop doing so)."""
    if enable and "showwarning" not in _saved:
        _saved["showwarning"] = warnings.showwarning
        warnings.showwarning = _show_warning
    elif not enable and "showwarning" in _saved:
        warnings.showwarning = _saved.pop("showwarning")


def _extra_fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record = event.get("_record")
    if record is not None and getattr(record, "suppressed_repeats", None):
        event["suppressed_repeats"] = record.suppressed_repeats
    return event


def configure(level: str = "INFO", fmt: str = "json", secrets: Iterable[str | None] = ()) -> None:
    """Route structlog and stdlib logging (kafka-python, httpx, SDK, warnings) to stderr."""
    REDACTOR.add(*secrets)
    json_mode = fmt == "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if json_mode
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    final: list[structlog.types.Processor] = [
        _extra_fields,
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
    ]
    if json_mode:
        # Tracebacks as structured data, so a line stays one JSON object.
        # No locals: they could hold anything, secrets included, and bloat the line.
        final.append(
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        )
    if json_mode:
        final.append(_severity)
    final += [_redact, _remember, renderer]
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(LibraryFilter())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    capture_warnings(True)
    # Library chatter stays at WARNING unless the user asks for DEBUG.
    for noisy in _LIBRARIES:
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
        )
