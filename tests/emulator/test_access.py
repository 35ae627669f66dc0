"""Who can reach the emulator: loopback-only binding and the API key, switched at run time."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable

import httpx2
import pytest
from emu_helpers import make_client, raw
from google.genai import errors

from connector.emulator import EmulatorServer
from connector.emulator.cli import build_parser

MODEL = "gemini-2.5-flash"
ONE = [{"contents": "hello"}]


def _outward_ipv4() -> str | None:
    """This machine's non-loopback IPv4 address, if it has one (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
        except OSError:
            return None
        ip = str(probe.getsockname()[0])
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def test_binds_loopback_by_default() -> None:
    """EmulatorServer and the CLI default to 127.0.0.1; other interfaces get no answer."""
    assert build_parser().parse_args([]).host == "127.0.0.1"
    with EmulatorServer() as srv:
        assert srv.address == ("127.0.0.1", srv.port)
        assert srv.base_url == f"http://127.0.0.1:{srv.port}"
        assert httpx2.get(f"{srv.base_url}/_emulator/health").json() == {"ok": True}
        outward = _outward_ipv4()
        if outward is not None:
            with pytest.raises((httpx2.ConnectError, httpx2.ConnectTimeout)):
                httpx2.get(f"http://{outward}:{srv.port}/_emulator/health", timeout=2)


def test_api_key_switch_mid_run(make_emulator: Callable[..., EmulatorServer]) -> None:
    """Setting api_key over the control API makes the old key fail at once, on every call,
    with the real service's 400 INVALID_ARGUMENT API_KEY_INVALID; missing keys stay 403."""
    srv = make_emulator()
    old, new = make_client(srv, key="old-key"), make_client(srv, key="new-key")
    job = old.batches.create(model=MODEL, src=ONE)  # type: ignore[arg-type]
    changed = httpx2.post(f"{srv.base_url}/_emulator/config", json={"api_key": "new-key"})
    assert changed.json()["api_key"] == "new-key"
    calls: list[Callable[[], object]] = [
        lambda: old.batches.create(model=MODEL, src=ONE),  # type: ignore[arg-type]
        lambda: old.batches.get(name=job.name or ""),
        old.batches.list,
        lambda: old.files.upload(file=io.BytesIO(b"{}\n"), config={"mime_type": "jsonl"}),
    ]
    for call in calls:
        with pytest.raises(errors.ClientError) as info:
            call()
        assert info.value.code == 400
        assert info.value.status == "INVALID_ARGUMENT"
        assert "API key not valid" in (info.value.message or "")
        assert "API_KEY_INVALID" in str(info.value.details)
    assert raw(srv, "GET", "/v1beta/batches", headers={}).status_code == 403
    assert new.batches.get(name=job.name or "").name == job.name  # jobs survive the switch
    assert srv.stats()["batches"]["created_total"] == 1  # the refused create made nothing
    httpx2.post(f"{srv.base_url}/_emulator/config", json={"api_key": None})
    assert old.batches.get(name=job.name or "").name == job.name  # any key again
