"""The bench's stand-in Geminis (`bench/common.py`) take every argument the sidecar passes.

They override `Gemini` methods; when the port grew `claim=` the fan-out stand-in did not,
and the bench's fan-out phase quarantined its job with a TypeError instead of measuring it.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

from connector.adapters.gemini import Gemini

ROOT = Path(__file__).resolve().parents[2]


@cache
def bench_common() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "common.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_common"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def overrides() -> list[tuple[str, str]]:
    common = bench_common()
    found = []
    for cls_name, cls in vars(common).items():
        if not (inspect.isclass(cls) and issubclass(cls, Gemini) and cls is not Gemini):
            continue
        for meth in ("create", "get", "upload_file", "download_to", "find_by_display_names"):
            if meth in vars(cls):
                found.append((cls_name, meth))
    return found


@pytest.mark.parametrize(("cls_name", "method"), overrides())
def test_a_stand_in_takes_what_the_adapter_takes(cls_name: str, method: str) -> None:
    cls = getattr(bench_common(), cls_name)
    want = list(inspect.signature(getattr(Gemini, method)).parameters)
    got = list(inspect.signature(getattr(cls, method)).parameters)
    assert got == want, f"{cls_name}.{method}{got} != Gemini.{method}{want}"


def test_the_stand_ins_are_found() -> None:
    assert ("GatedGemini", "create") in overrides()
