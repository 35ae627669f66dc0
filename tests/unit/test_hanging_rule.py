"""The hanging-transaction rule (KIP-664, `core.hanging`): abort only what is open past any
transaction's life and is not its coordinator's to end."""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st

from connector.core.hanging import RUNNING, CoordinatorView, OpenTransaction, hanging

NOW = 10_000_000
OLD = 1_200_000


def txn(pid: int = 7, epoch: int = 3, idle_ms: int = OLD + 1, start: int = 40) -> OpenTransaction:
    return OpenTransaction(pid, epoch, -1, NOW - idle_ms, start)


def view(
    state: str = "Ongoing",
    pid: int = 7,
    epoch: int = 3,
    parts: Iterable[tuple[str, int]] = (("ledger", 1),),
) -> CoordinatorView:
    return CoordinatorView(state, pid, epoch, frozenset(parts))


def test_unknown_to_every_coordinator_and_old_is_hanging() -> None:
    t = txn()
    assert hanging([t], {7: None}, "ledger", 1, NOW, OLD) == [t]


def test_young_is_never_hanging() -> None:
    assert hanging([txn(idle_ms=OLD)], {7: None}, "ledger", 1, NOW, OLD) == []


def test_one_its_coordinator_runs_over_this_partition_is_left_to_it() -> None:
    for state in RUNNING:
        assert hanging([txn()], {7: view(state)}, "ledger", 1, NOW, OLD) == []


def test_the_coordinator_moved_on_so_it_is_hanging() -> None:
    """The chaos run's case: the coordinator finished it (markers skipped), or the producer
    was fenced (a newer epoch), or the coordinator's transaction has other partitions."""
    for v in (
        view("CompleteCommit"),
        view("Empty"),
        view(epoch=4),
        view(parts=(("ledger", 2),)),
    ):
        assert hanging([txn()], {7: v}, "ledger", 1, NOW, OLD) == [txn()]


def test_a_producer_whose_lookup_failed_is_left_alone() -> None:
    assert hanging([txn()], {}, "ledger", 1, NOW, OLD) == []


def test_no_open_transaction_no_abort() -> None:
    assert hanging([txn(start=-1)], {7: None}, "ledger", 1, NOW, OLD) == []


@given(
    st.integers(0, 3 * OLD),
    st.sampled_from([None, *sorted(RUNNING), "Empty", "CompleteCommit", "CompleteAbort"]),
    st.integers(2, 5),
    st.booleans(),
)
def test_never_aborts_a_young_or_running_transaction(
    idle: int, state: str | None, epoch: int, here: bool
) -> None:
    t = txn(idle_ms=idle)
    v = None if state is None else view(state, epoch=epoch, parts=[("ledger", 1 if here else 2)])
    got = hanging([t], {7: v}, "ledger", 1, NOW, OLD)
    running = v is not None and v.state in RUNNING and v.producer_epoch == t.producer_epoch and here
    assert got == ([] if idle <= OLD or running else [t])
