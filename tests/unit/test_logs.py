"""Logs: one JSON object per line (libraries and warnings too), secrets masked, sane levels."""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections.abc import Iterator

import pytest
import structlog

from connector import logs
from connector.redact import REDACTOR, Redactor

KEY = "AIza" + "FAKE" * 8 + "123"  # built, never a committed key-shaped literal


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    structlog.reset_defaults()
    logs.configure("INFO", "json", secrets=[KEY, "hunter2-sasl"])
    buf = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buf)
    try:
        yield buf
    finally:
        REDACTOR.clear()
        logs.capture_warnings(False)
        structlog.reset_defaults()
        root.handlers[:], _ = saved
        root.setLevel(saved[1])


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_redactor_masks_values_and_patterns() -> None:
    r = Redactor()
    r.add("s3cr3t-value", "ab")  # too short to register
    assert r.text("x s3cr3t-value y") == "x *** y"
    assert r.text("http://user:pass@host:1/p") == "http://user:***@host:1/p"
    assert r.text("GET /v1?key=zzz&alt=json") == "GET /v1?key=***&alt=json"
    assert r.text(f"bad {KEY}") == "bad ***"
    assert r.text("x-goog-api-key: abc") == "x-goog-api-key: ***"
    assert r.text("Authorization: Bearer abc.def") == "Authorization: Bearer ***"
    assert r.text("token_budget=5 ab") == "token_budget=5 ab"
    assert r.value({"a": ["http://u:p@h"]}) == {"a": ["http://u:***@h"]}


def test_every_line_is_json_and_secrets_never_appear(
    json_logs: io.StringIO,
) -> None:
    log = structlog.get_logger("connector")
    log.info("starting", endpoint="explicit endpoint http://user:pass@emu:8765", key=KEY)
    logging.getLogger("google_genai.models").warning("request to %s failed", f"/v1?key={KEY}")
    logging.getLogger("kafka.conn").error(
        "<BrokerConnection host=k:9092>: Connect attempt returned error 111. Disconnecting."
    )
    try:
        raise RuntimeError(f"boom {KEY} sasl_plain_password=hunter2-sasl")
    except RuntimeError:
        log.exception("crashed")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("the SDK is experimental", UserWarning, stacklevel=1)
    lines = _lines(json_logs)
    text = json.dumps(lines)
    assert KEY not in text
    assert "hunter2-sasl" not in text
    assert "user:pass@" not in text
    by_logger = {str(x.get("logger")): x for x in lines}
    assert by_logger["kafka.conn"]["level"] == "warning"  # a reconnect is not an ERROR
    assert by_logger["google_genai.models"]["level"] == "warning"
    assert "py.warnings" in by_logger
    warned = by_logger["py.warnings"]
    assert warned["event"] == "python warning"  # not named after the file and the text
    assert warned["category"] == "UserWarning"
    assert warned["message"] == "the SDK is experimental"
    assert str(warned["source"]).startswith(__file__ + ":")
    assert all("severity" in x for x in lines)
    assert by_logger["kafka.conn"]["severity"] == "WARNING"
    assert by_logger["connector"]["level"] in ("info", "error")
    problem = logs.last_error()
    assert problem is not None
    assert problem["level"] == "warning"


def test_a_sdk_warning_subclass_is_one_structured_event(json_logs: io.StringIO) -> None:
    """google-genai's ExperimentalWarning (a UserWarning subclass) as it is logged at start."""

    class ExperimentalWarning(UserWarning):
        pass

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("batches.create is experimental", ExperimentalWarning, stacklevel=1)
    (line,) = [x for x in _lines(json_logs) if x.get("logger") == "py.warnings"]
    assert line["event"] == "python warning"
    assert line["category"] == "ExperimentalWarning"
    assert line["message"] == "batches.create is experimental"
    assert (line["level"], line["severity"]) == ("warning", "WARNING")


def test_severity_follows_level(json_logs: io.StringIO) -> None:
    log = structlog.get_logger("connector")
    log.info("a")
    log.warning("b")
    log.error("c")
    logging.getLogger("connector.lib").critical("d")
    got = {x["event"]: x["severity"] for x in _lines(json_logs)}
    assert got == {"a": "INFO", "b": "WARNING", "c": "ERROR", "d": "CRITICAL"}


def test_repeated_library_messages_are_collapsed(json_logs: io.StringIO) -> None:
    kafka = logging.getLogger("kafka.client")
    for _ in range(50):
        kafka.warning("Node %s not ready", 1)
    lines = [x for x in _lines(json_logs) if x.get("logger") == "kafka.client"]
    assert len(lines) == 1


def test_every_secret_setting_is_registered_with_the_redactor() -> None:
    """The registry password and health token, like the API key and Kafka passwords, are
    masked wherever they appear: `connector run` registers `Settings.secrets()`."""
    from connector import config

    env = {
        "GEMINI_API_KEY": KEY,
        "CONNECTOR_SCHEMA_REGISTRY_URL": "https://registry.example:8081",
        "CONNECTOR_SCHEMA_REGISTRY_USERNAME": "svc",
        "CONNECTOR_SCHEMA_REGISTRY_PASSWORD": "registry-pw-7f3a",
        "CONNECTOR_HEALTH_TOKEN": "health-token-91c2",
        "CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD": "sasl-pw-55e1",
    }
    s = config.load(args=None, env=env)
    secrets = s.secrets()
    for name in config.SECRET_SETTINGS:
        assert getattr(s, name) in secrets, name
    r = Redactor()
    r.add(*secrets)
    line = "registry 401 with registry-pw-7f3a; health-token-91c2; sasl-pw-55e1; " + KEY
    assert r.text(line) == "registry 401 with ***; ***; ***; ***"
    described = json.dumps(s.describe())
    for value in ("registry-pw-7f3a", "health-token-91c2", "sasl-pw-55e1", KEY):
        assert value not in described
        assert value not in repr(s)


def test_the_registry_password_never_reaches_a_log_line(json_logs: io.StringIO) -> None:
    from connector import config

    env = {
        "CONNECTOR_GEMINI_BASE_URL": "http://127.0.0.1:1",
        "CONNECTOR_SCHEMA_REGISTRY_PASSWORD": "registry-pw-7f3a",
    }
    REDACTOR.add(*config.load(args=None, env=env).secrets())
    structlog.get_logger("connector").warning(
        "registry refused", error="401: bad credentials registry-pw-7f3a"
    )
    text = json_logs.getvalue()
    assert "registry refused" in text
    assert "registry-pw-7f3a" not in text
