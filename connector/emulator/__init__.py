"""Gemini Batch API emulator: the Batch + Files REST protocol of google-genai on localhost.

Self-contained on purpose: it imports nothing from the rest of `connector`, so it cannot
share the sidecar's bugs.
"""

from .config import EmulatorConfig
from .server import EmulatorServer

__all__ = ["EmulatorConfig", "EmulatorServer"]
