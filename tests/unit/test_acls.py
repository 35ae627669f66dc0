"""The ACL list: derived from settings, printed by `connector acls`, shown in the docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connector import cli
from connector.acls import acl_table, kafka_acls_commands, required_acls
from connector.config import Settings

PRODUCTION = Path(__file__).resolve().parents[2] / "docs" / "production.md"


def test_every_topic_and_the_group_are_covered() -> None:
    s = Settings(request_topic="req", result_topic="res", dlq_topic="dlq", group_id="g")
    acls = {(a.resource_type, a.name, a.operation, a.pattern) for a in required_acls(s)}
    assert ("TOPIC", "req", "READ", "LITERAL") in acls
    assert ("GROUP", "g", "READ", "LITERAL") in acls
    for topic in ("res", "dlq", s.ledger, s.control):
        assert ("TOPIC", topic, "WRITE", "LITERAL") in acls
    for topic in (s.ledger, s.control):
        assert ("TOPIC", topic, "READ", "LITERAL") in acls
        assert ("TOPIC", topic, "CREATE", "LITERAL") in acls
    # Topics the sidecar does not manage are never created or altered by it.
    for topic in ("req", "res", "dlq"):
        assert not {op for t, n, op, _ in acls if n == topic} & {"CREATE", "ALTER"}
    # The default transactional ids are <group>.<host>.<random>: a prefix covers them all.
    assert ("TRANSACTIONAL_ID", "g.", "WRITE", "PREFIXED") in acls


def test_an_explicit_transactional_id_is_granted_literally() -> None:
    acls = required_acls(Settings(transactional_id="tx-7"))
    txn = [a for a in acls if a.resource_type == "TRANSACTIONAL_ID"]
    assert [(a.name, a.pattern) for a in txn] == [("tx-7", "LITERAL")]


def test_no_duplicates() -> None:
    acls = required_acls(Settings())
    assert len(acls) == len(set(acls))


def test_kafka_acls_commands() -> None:
    acls = required_acls(Settings(group_id="g"))
    lines = kafka_acls_commands(acls, "User:sidecar", "b:9092")
    assert len(lines) == len(acls)
    assert all("--allow-principal 'User:sidecar'" in line for line in lines)
    prefixed = next(line for line in lines if "--transactional-id" in line)
    assert prefixed.endswith("--transactional-id 'g.' --resource-pattern-type prefixed")
    assert any("--operation DescribeConfigs --topic" in line for line in lines)


def test_cli_prints_the_commands_without_a_gemini_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "CONNECTOR_GEMINI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli.main(["acls", "--principal", "User:x", "--request-topic", "in", "--group-id", "g"])
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == len(required_acls(Settings(request_topic="in", group_id="g")))
    assert "--operation Read --topic 'in'" in out[0]


def test_production_doc_shows_the_generated_table() -> None:
    """docs/production.md's ACL table is `connector acls --format table` for the defaults."""
    text = PRODUCTION.read_text(encoding="utf-8")
    table = acl_table(required_acls(Settings()))
    assert table in text, "paste `connector acls --format table` into docs/production.md"
    # And nothing else claims to be that table: one table with this header.
    assert len(re.findall(r"^\| resource \| name \|", text, re.M)) == 1
