"""Flow control: bounded memory and bounded waiting, run after every pass.

Payload shedding drops the requests of the INTENTs created last once payloads pass their
byte budget (they are re-read by offset at create); backpressure pauses consumption while
too many jobs, or too many bytes, wait for quota, and resumes it once they drain. A
partition waiting for the schema registry (`IntakeStep.held`) stays paused throughout.
"""

from __future__ import annotations

from collections.abc import Mapping

import structlog

from connector.config import Settings
from connector.core.batcher import Batcher
from connector.core.memory import payloads_to_drop, waiting
from connector.core.partitions import Partitions
from connector.core.ports import ConsumerPort
from connector.core.quota import should_pause
from connector.stages.step import BaseStep

log = structlog.get_logger("connector")


def poll_timeout(now: float, owned: Partitions, batcher: Batcher) -> float:
    """How long the next poll may wait: until a tracked job or an open batch is due, at
    most a second."""
    wake = [now + 1.0, *(t.due for t in owned.tracked())]
    nd = batcher.next_due()
    if nd is not None:
        wake.append(nd)
    return min(1.0, max(0.0, min(wake) - now))


class Flow(BaseStep):
    """Pauses and resumes consumption by what waits; sheds payloads past their budget."""

    name = "flow"

    def __init__(
        self,
        settings: Settings,
        consumer: ConsumerPort,
        owned: Partitions,
        held: Mapping[int, float],
    ) -> None:
        self.s = settings
        self.consumer = consumer
        self.owned = owned
        self.held = held
        self.paused = False

    def run(self, now: float, deadline: float) -> None:
        self.backpressure()

    def resume(self) -> None:
        """Resume everything but the partitions waiting for the registry; decide again."""
        self.consumer.resume_all()
        if self.held:
            self.consumer.pause(self.held)
        self.paused = False

    def shed_payloads(self) -> None:
        """Drop the payloads of the INTENTs created last once payloads pass their byte budget
        (they are re-read by offset at create): memory stays bounded while jobs wait."""
        drop = payloads_to_drop(self.owned.tracked(), self.s.max_payload_bytes)
        for t in drop:
            t.payload = None
        if drop:
            log.info(
                "dropped waiting jobs' requests from memory; they are re-read at create",
                jobs=len(drop),
                request_bytes=sum(t.size for t in drop),
            )

    def backpressure(self) -> None:
        self.shed_payloads()
        waiting_jobs, waiting_bytes = waiting(self.owned.tracked())
        should = should_pause(
            waiting_jobs, self.s.max_waiting_intents, waiting_bytes, self.s.max_waiting_bytes
        )
        if should and not self.paused:
            self.consumer.pause(self.owned)
            self.paused = True
            log.warning(
                "paused consumption: too many jobs wait for quota",
                waiting=waiting_jobs,
                waiting_bytes=waiting_bytes,
            )
        elif not should and self.paused:
            self.resume()  # partitions waiting for the schema registry stay paused
            log.info("resumed consumption", waiting=waiting_jobs, waiting_bytes=waiting_bytes)
