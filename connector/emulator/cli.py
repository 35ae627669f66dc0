"""Command line: `connector emulator --host 127.0.0.1 --port 8765 [--knob value ...]`.

Every `EmulatorConfig` field is a flag (`queue_delay_s` -> `--queue-delay-s`), generated from
the dataclass so the CLI never lags behind the knobs.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from .config import EmulatorConfig, boolean
from .server import EmulatorServer


def build_parser() -> argparse.ArgumentParser:
    """Parser with --host, --port, --verbose and one flag per knob."""
    parser = argparse.ArgumentParser(
        prog="connector emulator",
        description="Run the Gemini Batch API emulator (Batch + Files REST API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    defaults = EmulatorConfig()
    for f in dataclasses.fields(EmulatorConfig):
        kind = str(f.type)
        conv: Callable[[str], Any]
        if kind == "bool":
            conv = boolean
        elif kind.startswith("int"):
            conv = int
        elif kind.startswith("float"):
            conv = float
        else:
            conv = str
        parser.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=conv,
            default=getattr(defaults, f.name),
            help=f"default: {getattr(defaults, f.name)!r}",
        )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The EmulatorConfig the parsed flags describe."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(EmulatorConfig)}
    return EmulatorConfig(**values)


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground until SIGINT or SIGTERM; returns the exit code."""
    args = build_parser().parse_args(argv)
    server = EmulatorServer(
        config_from_args(args), host=args.host, port=args.port, verbose=args.verbose
    )
    stopping = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.stop, daemon=True).start()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    server.start()
    print(f"Gemini Batch API emulator listening on {server.base_url}", flush=True)
    stopping.wait()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
