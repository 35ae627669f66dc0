"""`connector run` (the sidecar) and `connector emulator` (the Gemini Batch API emulator).

Signals are handled here only: the first SIGTERM/SIGINT drains, a second exits at once.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

from connector import __version__, config
from connector.errors import (
    BrokerUnavailable,
    ConfigError,
    RegistryUnavailable,
    TransactionInDoubt,
)


def _run(args: argparse.Namespace) -> int:
    from connector import logs
    from connector.adapters.kafka import check_kafka_settings

    try:
        settings = config.load(args=args)
        check_kafka_settings(settings.kafka_extra)  # names and values, before connecting
    except ConfigError as exc:
        print(f"connector: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format, secrets=settings.secrets())
    from connector.core.pricing import load_price_table

    try:
        load_price_table(settings.price_table)  # a bad override fails now, not at first result
    except ConfigError as exc:
        print(f"connector: configuration error: {exc}", file=sys.stderr)
        return 2

    from connector.adapters.gemini import Gemini
    from connector.runner import Sidecar

    gemini = Gemini(
        api_key=settings.api_key or "emulator",
        base_url=settings.gemini_base_url or None,
        api_version=settings.api_version,
        timeout_s=settings.http_timeout_s,
    )
    sidecar = Sidecar(settings, gemini)
    signals = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            os._exit(128 + signum)  # second signal: leave now, the ledger makes this safe
        sidecar.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sidecar.run()
    except ConfigError as exc:
        print(f"connector: {exc}", file=sys.stderr)
        return 2
    except (BrokerUnavailable, RegistryUnavailable) as exc:
        print(f"connector: {exc}", file=sys.stderr)
        return 3
    except TransactionInDoubt as exc:  # the ledger and the transaction timeout make it safe
        print(f"connector: {exc}; exiting", file=sys.stderr)
        return 3
    finally:
        gemini.close()
    return 0


def _kafka_client_extra() -> dict[str, object]:
    """CONNECTOR_KAFKA_* plus the OAuth token provider, for the one-shot commands."""
    from connector.adapters.security import kafka_client_extra

    env = os.environ
    settings = config.Settings(
        kafka_extra=config.load_kafka_extra(env),
        oauth_token_url=env.get("CONNECTOR_OAUTH_TOKEN_URL", ""),
        oauth_client_id=env.get("CONNECTOR_OAUTH_CLIENT_ID", ""),
        oauth_client_secret=env.get("CONNECTOR_OAUTH_CLIENT_SECRET", ""),
        oauth_scope=env.get("CONNECTOR_OAUTH_SCOPE", ""),
    )
    return kafka_client_extra(settings)


def _replay_parser(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--bootstrap-servers", default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--dlq-topic", default=env("CONNECTOR_DLQ_TOPIC", "llm.requests.dlq"))
    p.add_argument(
        "--request-topic",
        default=env("CONNECTOR_REQUEST_TOPIC", "llm.requests"),
        help="where replayed records go (default: the request topic)",
    )
    p.add_argument(
        "--stage",
        action="append",
        help="only dead letters of this stage (VALUE_CONVERTER, VALIDATION); repeatable",
    )
    p.add_argument("--since", help="only records written at or after (epoch ms or ISO 8601)")
    p.add_argument("--until", help="only records written before (epoch ms or ISO 8601)")
    p.add_argument("--key", action="append", help="only records with this key; repeatable")
    p.add_argument("--dry-run", action="store_true", help="print what would be replayed")


def _dlq_replay(args: argparse.Namespace) -> int:
    from connector.core.dlq import DlqFilter, parse_time_ms
    from connector.dlq import replay_dead_letters

    try:
        flt = DlqFilter(
            stages=frozenset(args.stage) if args.stage else None,
            since_ms=parse_time_ms(args.since) if args.since else None,
            until_ms=parse_time_ms(args.until) if args.until else None,
            keys=frozenset(k.encode() for k in args.key) if args.key else None,
        )
        extra = _kafka_client_extra()
        summary = replay_dead_letters(
            args.bootstrap_servers, extra, args.dlq_topic, args.request_topic, flt, args.dry_run
        )
    except (ValueError, ConfigError) as exc:
        print(f"connector dlq replay: {exc}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        print(f"connector dlq replay: {exc}", file=sys.stderr)
        return 3
    verb = "would replay" if args.dry_run else "replayed"
    print(
        f"scanned {summary.scanned} dead letters, matched {summary.matched}, {verb} "
        f"{summary.matched if args.dry_run else summary.replayed} to {args.request_topic}"
    )
    return 0


def _cancel_parser(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--job", help="a job id (p<partition>-<offset>-<nonce>[/...])")
    target.add_argument("--request", help="a request id")
    p.add_argument("--reason", default="", help="why; goes into the 499 error results")
    p.add_argument("--bootstrap-servers", default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--group-id", default=env("CONNECTOR_GROUP_ID", "gemini-batch-connector"))
    p.add_argument("--request-topic", default=env("CONNECTOR_REQUEST_TOPIC", "llm.requests"))
    p.add_argument("--ledger-topic", default=env("CONNECTOR_LEDGER_TOPIC", ""))
    p.add_argument(
        "--control-topic",
        default=env("CONNECTOR_CONTROL_TOPIC", ""),
        help="default: <ledger topic>.control, as the sidecar",
    )


def _cancel(args: argparse.Namespace) -> int:
    import getpass
    import socket
    import time

    from connector.adapters.control import publish
    from connector.core.control import Command, Target, check

    target, ident = (Target.JOB, args.job) if args.job else (Target.REQUEST, args.request)
    try:
        by = f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        by = socket.gethostname()
    cmd = Command(target, ident, args.reason, int(time.time() * 1000), by)
    settings = config.Settings(
        bootstrap_servers=args.bootstrap_servers,
        group_id=args.group_id,
        request_topic=args.request_topic,
        ledger_topic=args.ledger_topic,
        control_topic=args.control_topic,
    )
    try:
        check(cmd)  # before connecting: a malformed id is refused at once
        extra = _kafka_client_extra()
        topic, offset = publish(args.bootstrap_servers, extra, settings, cmd)
    except (ValueError, ConfigError) as exc:
        print(f"connector cancel: {exc}", file=sys.stderr)
        return 2
    except BrokerUnavailable as exc:
        print(f"connector cancel: {exc}", file=sys.stderr)
        return 3
    print(
        f"cancel of {cmd.key} written to {topic} at offset {offset}; the replica owning it "
        f"answers its requests 499 CANCELLED and retires the command"
    )
    return 0


def _acls_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--principal",
        default="User:gemini-batch-connector",
        help="the sidecar's Kafka principal, e.g. User:sidecar (SCRAM/PLAIN user, certificate "
        "CN, OAuth client id)",
    )
    p.add_argument(
        "--format",
        choices=("commands", "table"),
        default="commands",
        help="kafka-acls.sh commands (default) or the markdown table of docs/production.md",
    )
    config.build_parser(p)


def _acls(args: argparse.Namespace) -> int:
    from connector.acls import acl_table, kafka_acls_commands, required_acls

    # The ACLs do not depend on the Gemini endpoint: do not ask for one to print them.
    env = {**os.environ}
    if not env.get("GEMINI_API_KEY") and not env.get("GOOGLE_API_KEY"):
        env.setdefault("CONNECTOR_GEMINI_BASE_URL", "http://unused.invalid")
    try:
        settings = config.load(env=env, args=args)
    except ConfigError as exc:
        print(f"connector acls: configuration error: {exc}", file=sys.stderr)
        return 2
    acls = required_acls(settings)
    if args.format == "table":
        print(acl_table(acls))
    else:
        print("\n".join(kafka_acls_commands(acls, args.principal, settings.bootstrap_servers)))
    return 0


def _emulator(rest: list[str]) -> int:
    from connector.emulator.cli import main as emulator_main

    return emulator_main(rest)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="connector", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the sidecar (settings from flags and environment)")
    config.build_parser(run)
    sub.add_parser("emulator", help="run the Gemini Batch API emulator", add_help=False)
    sub.add_parser("settings", help="print the settings table (markdown)")
    _acls_parser(
        sub.add_parser("acls", help="print the Kafka ACLs the sidecar needs for these settings")
    )
    dlq = sub.add_parser("dlq", help="dead-letter topic tools")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    _replay_parser(dlq_sub.add_parser("replay", help="re-publish dead letters after a fix"))
    _cancel_parser(
        sub.add_parser(
            "cancel", help="cancel a job or one request (a command on the control topic)"
        )
    )
    sub.add_parser("status", help="show in-flight jobs from the ledger topic", add_help=False)
    if argv[:1] == ["emulator"]:
        return _emulator(argv[1:])
    if argv[:1] == ["status"]:
        from connector.statuscli import main as status_main

        return status_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "settings":
        print(config.env_table())
        return 0
    if args.command == "acls":
        return _acls(args)
    if args.command == "dlq":
        return _dlq_replay(args)
    if args.command == "cancel":
        return _cancel(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
