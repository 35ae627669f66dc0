"""Fixtures: the emulator in-process on a free port, and real google-genai clients aimed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emu_helpers import make_client
from google import genai

from connector.emulator import EmulatorConfig, EmulatorServer

FAST = {"queue_delay_s": 0.05, "processing_delay_s": 0.1, "per_request_delay_s": 0.0}


@pytest.fixture(autouse=True)
def _gemini_developer_api(monkeypatch: pytest.MonkeyPatch) -> None:
    """Vertex mode would change every path; tests always speak the Gemini Developer API."""
    for var in (
        "GOOGLE_GENAI_USE_VERTEXAI",
        "GOOGLE_GENAI_USE_ENTERPRISE",
        "GOOGLE_GEMINI_BASE_URL",
    ):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., EmulatorServer]]:
    """Start emulators with fast defaults plus the given knobs; all are stopped afterwards."""
    started: list[EmulatorServer] = []

    def make(**knobs: Any) -> EmulatorServer:
        srv = EmulatorServer(EmulatorConfig(**{**FAST, **knobs}), host="127.0.0.1", port=0)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., EmulatorServer]) -> EmulatorServer:
    """An emulator with fast timings (jobs finish in ~0.15 s)."""
    return make_emulator()


@pytest.fixture
def client(emulator: EmulatorServer) -> genai.Client:
    """SDK client (v1beta) for the `emulator` fixture."""
    return make_client(emulator)
