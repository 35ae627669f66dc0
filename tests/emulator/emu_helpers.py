"""Helpers shared by the emulator tests: SDK clients and polling with deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx2
from google import genai
from google.genai import types

from connector.emulator import EmulatorServer
from connector.testing import wait_until as _wait_until


def make_client(
    srv: EmulatorServer, api_version: str | None = "v1beta", key: str = "test-key"
) -> genai.Client:
    """A real SDK client over real HTTP; api_version None keeps the SDK default (v1)."""
    options = types.HttpOptions(base_url=srv.base_url, timeout=30_000)
    if api_version is not None:
        options.api_version = api_version
    return genai.Client(api_key=key, http_options=options)


def wait_done(client: genai.Client, name: str, timeout: float = 15.0) -> types.BatchJob:
    """Poll `batches.get` until the job is done, failing after `timeout` seconds."""

    def done() -> types.BatchJob | None:
        job = client.batches.get(name=name)
        return job if job.done else None

    job = _wait_until(done, timeout, 0.02, f"{name} to finish")
    assert job is not None
    return job


async def wait_done_async(client: genai.Client, name: str, timeout: float = 15.0) -> types.BatchJob:
    """Async twin of `wait_done`, through `client.aio`."""
    deadline = time.monotonic() + timeout
    while True:
        job = await client.aio.batches.get(name=name)
        if job.done:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {job.state} after {timeout} s")
        await asyncio.sleep(0.02)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition"
) -> None:
    """Poll `predicate` until true or fail after `timeout` seconds."""
    _wait_until(predicate, timeout, 0.02, what)


def raw(srv: EmulatorServer, method: str, path: str, **kwargs: Any) -> httpx2.Response:
    """A plain HTTP call (no SDK), with the test key unless headers are given."""
    headers = kwargs.pop("headers", {"x-goog-api-key": "test-key"})
    return httpx2.request(method, srv.base_url + path, headers=headers, timeout=30, **kwargs)
