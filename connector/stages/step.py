"""The step protocol: what every part of a loop pass offers the runner.

Modelled on Arroyo's `ProcessingStrategy`: the runner holds an ordered list of steps and
only wires and orders them. Each pass it runs every step in order within the pass's
deadline; on stop it drains them in the same order; the ownership path tells every step
which partitions were assigned and revoked (after the partitions' own state is rebuilt or
dropped), so a step that keeps per-partition state forgets it in the same place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class Step(Protocol):
    name: str
    """The step's phase name in the slow-pass log (`<name>_s`)."""

    def on_assigned(self, partitions: Iterable[int]) -> None:
        """Partitions this replica took on (assigned, or rebuilt after a Kafka failure)."""
        ...

    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Partitions let go (revoked, lost, fenced, or forgotten after a Kafka failure)."""
        ...

    def run(self, now: float, deadline: float) -> None:
        """The step's share of one pass; starts no new provider call past `deadline`."""
        ...

    def drain(self, deadline: float) -> None:
        """On stop: leave durable what the next owner needs; start nothing new."""
        ...


class BaseStep:
    """No-op defaults for the protocol: a step overrides only what it takes part in."""

    name = "step"

    def on_assigned(self, partitions: Iterable[int]) -> None:
        return None

    def on_revoked(self, partitions: Iterable[int]) -> None:
        return None

    def run(self, now: float, deadline: float) -> None:
        return None

    def drain(self, deadline: float) -> None:
        return None
