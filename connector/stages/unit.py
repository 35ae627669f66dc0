"""The pass's own unit of work: begun before intake, committed once intake is done.

Intake's sends (INTENTs, dead letters, 504s) and the offsets they resolve are one unit: in
exactly-once mode one transaction, begun here explicitly (never implicitly by a first
send), committed with the offsets by `Checkpoint.commit`, and aborted by it when refused.
A pass that fails otherwise is aborted by the runner (`Sidecar.guarded_step`); every other
unit (a job's step, an operator command) begins and aborts in `Context.unit`.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from connector.core.partitions import Partitions
from connector.core.ports import ConsumerPort, TransactionalProducerPort
from connector.core.records import Record
from connector.errors import KafkaError
from connector.stages.checkpoint import Checkpoint
from connector.stages.sink import Sink
from connector.stages.step import BaseStep

log = structlog.get_logger("connector")


class PassUnit:
    """The records a pass took and the checkpoint of what they sent."""

    def __init__(
        self,
        sink: Sink,
        consumer: ConsumerPort,
        owned: Partitions,
        txn: TransactionalProducerPort | None,
    ) -> None:
        self.sink = sink
        self.consumer = consumer
        self.owned = owned
        self.txn = txn
        """The transactional producer in exactly-once mode; None at-least-once."""
        self.records: Sequence[Record] = ()
        self.cp = Checkpoint()

    def begin(self, records: Sequence[Record]) -> None:
        """A pass's unit: its transaction begins before intake sends anything."""
        self.open(records)
        if self.txn is not None:
            self.txn.begin_transaction()

    def open(self, records: Sequence[Record] = ()) -> None:
        """A fresh checkpoint, no transaction begun: the drain's unit (unchanged from the
        loop before the steps; its sends open the producer's transaction as they go)."""
        self.records = records
        self.cp = Checkpoint()

    def abort(self) -> None:
        """Abort the open transaction of a failed pass (exactly-once); a failure to reach
        the broker for it is left to the broker's transaction timeout."""
        if self.txn is None:
            return
        try:
            self.txn.abort_transaction()
        except KafkaError as exc:
            log.warning("aborting the failed pass's transaction failed", error=str(exc))

    def commit(self) -> dict[int, int]:
        """Flush, advance the watermarks, commit the offsets (in the transaction)."""
        return self.cp.commit(self.sink, self.consumer, self.owned, self.txn)


class CommitStep(BaseStep):
    """Commits the pass's unit, right after intake and before any provider call."""

    name = "commit"

    def __init__(self, unit: PassUnit) -> None:
        self.unit = unit

    def run(self, now: float, deadline: float) -> None:
        self.unit.commit()

    def drain(self, deadline: float) -> None:
        self.unit.commit()
