"""The Kafka ACLs one deployment of the sidecar needs, derived from its settings.

Why from code: the list is what the secured-broker tests grant (and nothing more), the
`connector acls` command prints, and docs/production.md shows (drift-tested), so a new
Kafka call that needs another permission fails a test instead of a production start.

Pure: no Kafka client here; operations and resource types are Kafka's own names.
"""

from __future__ import annotations

from dataclasses import dataclass

from connector.config import Settings


@dataclass(frozen=True, slots=True)
class Acl:
    """One ALLOW binding for the sidecar's principal (any host)."""

    resource_type: str
    """TOPIC, GROUP or TRANSACTIONAL_ID (kafka-python's ResourceType names)."""
    name: str
    operation: str
    """READ, WRITE, CREATE, ALTER or DESCRIBE_CONFIGS (kafka-python's ACLOperation names)."""
    pattern: str = "LITERAL"
    """LITERAL, or PREFIXED for the default transactional ids (`<group_id>.<host>.<random>`)."""
    why: str = ""

    @property
    def cli_resource(self) -> str:
        flag = {"TOPIC": "--topic", "GROUP": "--group", "TRANSACTIONAL_ID": "--transactional-id"}
        return f"{flag[self.resource_type]} '{self.name}'"

    @property
    def cli_operation(self) -> str:
        return "".join(part.capitalize() for part in self.operation.split("_"))


def required_acls(s: Settings) -> list[Acl]:
    """Every permission the sidecar uses, in both processing guarantees.

    Both guarantees use a transactional producer (ledger claims), so the transactional id is
    always needed. Read, Write and Alter each imply Describe, so Describe is never listed.
    Create is only on the ledger and control topics, which the sidecar creates itself; the
    request, result and dead-letter topics must exist (create them with the cluster's tools).
    """
    req, res, dlq, ledger, control = (
        s.request_topic,
        s.result_topic,
        s.dlq_topic,
        s.ledger,
        s.control,
    )
    acls = [
        Acl("TOPIC", req, "READ", why="consume requests; re-read them by offset"),
        Acl("TOPIC", req, "DESCRIBE_CONFIGS", why="retention and max.message.bytes at start"),
        Acl("GROUP", s.group_id, "READ", why="join the group; commit offsets"),
        Acl("TOPIC", res, "WRITE", why="produce results"),
        Acl("TOPIC", res, "DESCRIBE_CONFIGS", why="max.message.bytes at start"),
        Acl("TOPIC", dlq, "WRITE", why="produce dead letters"),
        Acl("TOPIC", dlq, "DESCRIBE_CONFIGS", why="max.message.bytes at start"),
        Acl("TOPIC", ledger, "CREATE", why="create the job ledger (compacted)"),
        Acl("TOPIC", ledger, "READ", why="recover jobs of an assigned partition"),
        Acl("TOPIC", ledger, "WRITE", why="record jobs"),
        Acl("TOPIC", ledger, "DESCRIBE_CONFIGS", why="check compaction and size limit"),
        Acl(
            "TOPIC",
            ledger,
            "ALTER",
            why="add partitions when the request topic grows; abort a hanging transaction",
        ),
        Acl("TOPIC", control, "CREATE", why="create the control topic (compacted)"),
        Acl("TOPIC", control, "READ", why="read operator commands (`connector cancel`)"),
        Acl("TOPIC", control, "WRITE", why="retire executed commands"),
    ]
    if s.transactional_id:
        acls.append(
            Acl(
                "TRANSACTIONAL_ID",
                s.transactional_id,
                "WRITE",
                why="ledger claims and exactly_once transactions",
            )
        )
    else:
        acls.append(
            Acl(
                "TRANSACTIONAL_ID",
                f"{s.group_id}.",
                "WRITE",
                pattern="PREFIXED",
                why="ledger claims and exactly_once transactions (default ids)",
            )
        )
    return acls


def kafka_acls_commands(acls: list[Acl], principal: str, bootstrap: str) -> list[str]:
    """`kafka-acls.sh` commands granting the list to `principal` (e.g. `User:sidecar`)."""
    out = []
    for a in acls:
        pattern = "" if a.pattern == "LITERAL" else f" --resource-pattern-type {a.pattern.lower()}"
        out.append(
            f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config admin.properties "
            f"--add --allow-principal '{principal}' --operation {a.cli_operation} "
            f"{a.cli_resource}{pattern}"
        )
    return out


def acl_table(acls: list[Acl]) -> str:
    """The markdown table in docs/production.md (drift-tested against the defaults)."""
    rows = ["| resource | name | pattern | operation | why |", "|---|---|---|---|---|"]
    for a in acls:
        rows.append(
            f"| {a.resource_type} | `{a.name}` | {a.pattern} | {a.cli_operation} | {a.why} |"
        )
    return "\n".join(rows)
