"""Emulator cost figures: CPU of a 10k-request inline job, memory of a 100k-line file job.

Run: `.venv/bin/python bench/emulator_bench.py`. Prints figures; asserts nothing.
Each measurement starts the emulator as its own process (`python -m connector.emulator`) and
reads that process's CPU time and peak RSS from /proc (Linux), so client-side work is excluded.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx2
import orjson

from connector.testing import wait_until

ROOT = Path(__file__).resolve().parent.parent
KEY = {"x-goog-api-key": "bench"}
TICKS = os.sysconf("SC_CLK_TCK")


class Emulator:
    """An emulator subprocess on a free port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connector.emulator", "--port", str(port),
             "--enqueued-token-cap", str(10**12), "--queue-delay-s", "0"],
            env=env, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.proc.stdout.readline()  # "listening on ..."

    def cpu(self) -> float:
        """utime + stime of the emulator process, in seconds."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def rss_mb(self, key: str) -> float:
        """VmRSS or VmHWM (peak) in MB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        """Terminate and reap."""
        self.proc.terminate()
        self.proc.wait(timeout=10)


def wait_done(http: httpx2.Client, base: str, name: str) -> dict[str, object]:
    """Advance the emulator clock past processing, then poll until done."""
    http.post(f"{base}/_emulator/clock/advance", json={"seconds": 3600})

    def done() -> dict[str, object] | None:
        op = http.get(f"{base}/v1beta/{name}", headers=KEY).json()
        return dict(op) if op["done"] else None

    op = wait_until(done, timeout=600, message=f"{name} to finish")
    assert op is not None
    return op


def inline_10k() -> None:
    """10k inline requests: emulator CPU for create, completion and the first full read."""
    emu = Emulator()
    try:
        requests = [
            {"request": {"contents": [{"parts": [{"text": f"prompt number {i} about the sea"}]}]},
             "metadata": {"key": f"k{i}"}}
            for i in range(10_000)
        ]  # fmt: skip
        batch = {"displayName": "bench-inline", "inputConfig": {"requests": {"requests": requests}}}
        body = orjson.dumps({"batch": batch})
        with httpx2.Client(timeout=600) as http:
            http.get(f"{emu.base}/_emulator/health")
            cpu0 = emu.cpu()
            url = f"{emu.base}/v1beta/models/gemini-2.5-flash:batchGenerateContent"
            op = http.post(url, content=body, headers=KEY).json()
            done = wait_done(http, emu.base, op["name"])
            cpu = emu.cpu() - cpu0
        output = done["metadata"]["output"]  # type: ignore[index]
        count = len(output["inlinedResponses"]["inlinedResponses"])
        print(
            f"inline 10k: {count} responses; create body {len(body) / 1e6:.1f} MB; "
            f"emulator CPU {cpu:.2f} s (create + complete + read, incl. HTTP and polls)"
        )
    finally:
        emu.stop()


def file_100k(tmp: Path) -> None:
    """100k-line file job: emulator peak RSS before and after building the output."""
    path = tmp / "in.jsonl"
    with path.open("wb") as f:
        for i in range(100_000):
            req = {"contents": [{"parts": [{"text": f"line {i} of the big file"}]}]}
            f.write(orjson.dumps({"key": f"r{i}", "request": req}) + b"\n")
    size = path.stat().st_size
    emu = Emulator()
    try:
        with httpx2.Client(timeout=600) as http:
            start = http.post(
                f"{emu.base}/upload/v1beta/files",
                headers={**KEY, "X-Goog-Upload-Protocol": "resumable",
                         "X-Goog-Upload-Command": "start",
                         "X-Goog-Upload-Header-Content-Length": str(size)},
                json={"file": {"mimeType": "application/jsonl"}},
            )  # fmt: skip
            with path.open("rb") as f:
                up = http.post(
                    start.headers["x-goog-upload-url"],
                    content=f.read(),
                    headers={
                        "X-Goog-Upload-Command": "upload, finalize",
                        "X-Goog-Upload-Offset": "0",
                    },
                )
            name = up.json()["file"]["name"]
            rss0, hwm0, cpu0 = emu.rss_mb("VmRSS"), emu.rss_mb("VmHWM"), emu.cpu()
            op = http.post(
                f"{emu.base}/v1beta/models/gemini-2.5-flash:batchGenerateContent",
                headers=KEY,
                json={"batch": {"inputConfig": {"fileName": name}}},
            ).json()
            done = wait_done(http, emu.base, op["name"])
            cpu, hwm = emu.cpu() - cpu0, emu.rss_mb("VmHWM")
            out = done["metadata"]["output"]["responsesFile"]  # type: ignore[index]
            meta = http.get(f"{emu.base}/v1beta/{out}", headers=KEY).json()
        print(
            f"file 100k: input {size / 1e6:.1f} MB, output {int(meta['sizeBytes']) / 1e6:.1f} MB; "
            f"emulator RSS {rss0:.1f} MB before (peak so far {hwm0:.1f} MB, the upload), "
            f"peak {hwm:.1f} MB after create + complete; CPU {cpu:.2f} s"
        )
    finally:
        emu.stop()


def main() -> None:
    """Run both measurements, each on a fresh emulator process."""
    inline_10k()
    with tempfile.TemporaryDirectory() as tmp:
        file_100k(Path(tmp))


if __name__ == "__main__":
    main()
