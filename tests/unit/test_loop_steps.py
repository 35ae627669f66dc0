"""The loop as a list of steps (issue 16 B): the runner wires and orders, the steps do.

The order is part of the guarantees (commands before pruning, submitting and tracking; the
pass's unit committed before any provider call), so it is pinned here; so is the contract
that ownership tells every step which partitions it took on and let go, that a `Fenced`
step ends the pass's steps while flow control still runs, and the pass's unit of work.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from connector.core.batcher import Batcher, BatchLimits
from connector.core.partitions import Partitions
from connector.errors import BrokerUnavailable, Fenced
from connector.stages.flow import poll_timeout
from connector.stages.step import BaseStep
from connector.stages.unit import PassUnit
from connector.testing import harness


class Recording(BaseStep):
    name = "recording"

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, object]] = []
        self.fail = fail

    def on_assigned(self, partitions: Iterable[int]) -> None:
        self.calls.append(("assigned", sorted(partitions)))

    def on_revoked(self, partitions: Iterable[int]) -> None:
        self.calls.append(("revoked", sorted(partitions)))

    def run(self, now: float, deadline: float) -> None:
        self.calls.append(("run", deadline - now))
        if self.fail is not None:
            raise self.fail

    def drain(self, deadline: float) -> None:
        self.calls.append(("drain", None))


def test_the_pass_runs_its_steps_in_the_documented_order() -> None:
    with_control = harness()
    assert [s.name for s in with_control.sidecar.steps] == [
        "intake",
        "commit",
        "control",
        "prune",
        "submit",
        "track",
    ]


def test_ownership_tells_every_step_of_assigned_and_revoked_partitions() -> None:
    h = harness(partitions=2)
    rec = Recording()
    h.sidecar.ownership.steps = [*h.sidecar.ownership.steps, rec]
    h.consumer.assign(0, 1)
    h.step()
    h.consumer.revoke(1)
    h.step()
    told = [c for c in rec.calls if c[1]]  # an assignment first lets go of none it holds
    assert told == [("assigned", [0, 1]), ("revoked", [1])]
    assert sorted(h.sidecar.owned) == [0]


def test_a_fenced_step_ends_the_pass_drops_every_partition_and_flow_still_runs() -> None:
    h = harness(partitions=2)
    h.consumer.assign(0, 1)
    h.step()
    first, after = Recording(Fenced("group generation is stale")), Recording()
    h.sidecar.steps = [first, after]
    flow_runs: list[float] = []
    h.sidecar.flow.run = lambda now, deadline: flow_runs.append(now)  # type: ignore[method-assign]
    h.step()
    assert [c for c, _ in first.calls] == ["run"]
    assert after.calls == [], "a Fenced step ends the pass's steps"
    assert flow_runs, "flow control runs after a fenced pass too"
    assert not h.sidecar.owned
    assert h.sidecar.stats.fenced == 1


def test_every_step_runs_against_the_pass_deadline_and_drains_in_order() -> None:
    h = harness(pass_budget_s=7.0)
    h.consumer.assign(0)
    a, b = Recording(), Recording()
    h.sidecar.steps = [a, b]
    h.step()
    assert a.calls == [("run", 7.0)]
    assert b.calls == [("run", 7.0)]
    h.sidecar._drain()
    assert a.calls[-1] == ("drain", None)
    assert b.calls[-1] == ("drain", None)


class Txn:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def abort_transaction(self) -> None:
        self.calls.append("abort")
        if self.fail:
            raise BrokerUnavailable("broker down")


def unit_with(txn: Txn | None) -> PassUnit:
    return PassUnit(None, None, Partitions(), txn)  # type: ignore[arg-type]


@pytest.mark.parametrize("fail", [False, True])
def test_the_pass_unit_begins_and_aborts_its_transaction_explicitly(fail: bool) -> None:
    txn = Txn(fail)
    unit = unit_with(txn)
    unit.begin(())
    unit.abort()  # an unreachable broker leaves it to the transaction timeout: no raise
    assert txn.calls == ["begin", "abort"]


def test_at_least_once_the_pass_unit_has_no_transaction() -> None:
    unit = unit_with(None)
    unit.begin(())
    unit.abort()
    assert unit.cp.empty


def test_poll_waits_until_the_next_batch_is_due_at_most_a_second() -> None:
    batcher = Batcher(BatchLimits(max_requests=10, max_bytes=1000, max_wait_s=0.25))
    assert poll_timeout(100.0, Partitions(), batcher) == 1.0, "nothing due: one second"
    h = harness(batch_max_wait_s=0.5)
    h.publish("r0")
    h.consumer.assign(0)
    h.step(2)  # the first pass takes the partition on and rewinds; the second reads r0
    assert len(h.sidecar.batcher) == 1
    now = h.clock()
    assert poll_timeout(now, h.sidecar.owned, h.sidecar.batcher) == pytest.approx(0.5)
    h.advance(0.75)
    assert poll_timeout(h.clock(), h.sidecar.owned, h.sidecar.batcher) == 0.0, "overdue"
