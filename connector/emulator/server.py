"""HTTP transport: a stdlib threading HTTP/1.1 server with keep-alive, plus the public
`EmulatorServer` that tests and the CLI start in-process."""

from __future__ import annotations

import io
import logging
import shutil
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from .config import EmulatorConfig
from .control import Control
from .messages import Body, Request, Response
from .service import Service
from .wire import ApiError, JsonObj

log = logging.getLogger("connector.emulator")
_COPY = 1 << 20


class _Handler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a `Request` for the service or the control API."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "GeminiBatchEmulator/1"
    sys_version = ""
    service: ClassVar[Service]
    control: ClassVar[Control]
    verbose: ClassVar[bool] = False

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        body = self._body()
        host = self.headers.get("Host") or f"127.0.0.1:{getattr(self.server, 'server_port', 0)}"
        req = Request(
            method=self.command,
            path=unquote(parts.path),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers=self.headers,  # type: ignore[arg-type]
            body=body,
            origin=f"http://{host}",
        )
        try:
            if req.path.startswith("/_emulator/"):
                resp = self.control.handle(req)
            else:
                resp = self.service.handle(req)
        except ApiError as exc:
            resp = Response.json(exc.body(), exc.code)
        except Exception as exc:  # a bug must still answer in Google's error shape
            log.exception("emulator error on %s %s", self.command, self.path)
            resp = Response.json(ApiError(500, f"Emulator error: {exc!r}").body(), 500)
        body.drain()
        if resp.file is not None and not req.path.startswith("/_emulator/"):
            with self.service.in_flight_for(req):  # a download is in flight until sent
                self._send(resp)
        else:
            self._send(resp)

    def _body(self) -> Body:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = self._read_chunked()
            return Body(io.BytesIO(data), len(data))
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return Body(self.rfile, max(length, 0))  # type: ignore[arg-type]

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline().strip():
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if resp.file is not None:
            try:
                handle = resp.file.open("rb")
            except OSError:
                handle = io.BytesIO(b"")  # type: ignore[assignment]
            with handle:
                handle.seek(0, io.SEEK_END)
                size = handle.tell()
                handle.seek(0)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                rate = self.service.config.download_bytes_per_s
                if rate > 0:
                    _copy_throttled(handle, self.wfile, rate)
                else:
                    shutil.copyfileobj(handle, self.wfile, _COPY)
            return
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        if self.verbose:
            sys.stderr.write("emulator: " + (format % args) + "\n")


def _copy_throttled(src: Any, dst: Any, bytes_per_s: float) -> None:
    """Copy at most `bytes_per_s`, in 64 KiB pieces paced against a monotonic clock."""
    piece = 64 * 1024
    start, sent = time.monotonic(), 0
    while chunk := src.read(piece):
        dst.write(chunk)
        sent += len(chunk)
        ahead = sent / bytes_per_s - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)  # pacing: the emulated link's speed, not a wait for anything


class EmulatorServer:
    """The Gemini Batch API emulator on a background thread.

    ```python
    with EmulatorServer(EmulatorConfig(queue_delay_s=0.1), port=0) as srv:
        client = genai.Client(api_key="k", http_options={"base_url": srv.base_url})
    ```
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.service = Service(config or EmulatorConfig())
        self.control = Control(self.service)
        self.host = host
        self._port = port
        self._verbose = verbose
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> EmulatorServer:
        """Bind and serve in a daemon thread; returns self."""
        self._bind()
        assert self._httpd is not None
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="gemini-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve on the calling thread until `stop()` (used by the CLI)."""
        self._bind()
        assert self._httpd is not None
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        """Stop serving and remove private storage."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.service.files.close()

    def __enter__(self) -> EmulatorServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _bind(self) -> None:
        if self._httpd is not None:
            return
        handler = type(
            "Handler",
            (_Handler,),
            {"service": self.service, "control": self.control, "verbose": self._verbose},
        )
        httpd = ThreadingHTTPServer((self.host, self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd

    # -- addresses ------------------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The bound socket address (host, port): what is actually exposed."""
        if self._httpd is None:
            raise RuntimeError("EmulatorServer is not started")
        host, port = self._httpd.server_address[:2]
        return str(host), int(port)

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port 0)."""
        if self._httpd is None:
            raise RuntimeError("EmulatorServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, for `HttpOptions(base_url=...)`."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    # -- control API, in-process ----------------------------------------------------------

    @property
    def config(self) -> EmulatorConfig:
        """Knobs in force."""
        return self.service.config

    def update_config(self, **changes: Any) -> EmulatorConfig:
        """Change knobs at run time (e.g. `transient_error_rate=0.5`)."""
        return self.service.update_config(changes)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator clock forward; returns the new epoch time."""
        return self.service.clock.advance(seconds)

    def now(self) -> float:
        """The emulator's current epoch time."""
        return self.service.clock.now()

    def force_state(self, name: str, state: str) -> JsonObj:
        """Force batch `name` (`batches/ID` or ID) into `state`; returns its Operation."""
        return self.control.force(name, state)

    def stats(self) -> JsonObj:
        """Same as `GET /_emulator/stats`."""
        return self.control.stats()

    def reset(self) -> None:
        """Forget all batches and files."""
        self.service.jobs.reset()
        self.service.files.reset()
        self.service.reset_calls()
