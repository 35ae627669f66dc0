"""Seeded coin flips for the fault knobs.

Each flip depends only on the seed, the fault's name and a call or job number, never on a
shared RNG's history, so a run is reproducible whatever other calls interleave with it.
"""

from __future__ import annotations

import hashlib

_UNIT = float(1 << 64)


def chance(seed: int, fault: str, number: int, rate: float) -> bool:
    """True with probability `rate` for this (seed, fault, number); 0 and 1 are exact."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    digest = hashlib.blake2b(f"{seed}:{fault}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _UNIT < rate


def triggered(trigger: str, text: str) -> bool:
    """Whether a (non-empty) trigger string occurs in `text`."""
    return bool(trigger) and trigger in text
