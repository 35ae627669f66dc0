"""The job stages as loop steps: thin wrappers that give each its place in the pass.

Order matters and is the runner's (`Sidecar.attach`): operator commands before pruning,
submitting and tracking, so a targeted job is neither pruned, created nor polled before
the command is seen (see stages/control.py); pruning before submitting; tracking last.
Each of these commits its own units (`Context.unit`); none starts a provider call past the
pass's deadline.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.core.quota import Budget
from connector.stages.control import Controller
from connector.stages.step import BaseStep
from connector.stages.submitter import Submitter
from connector.stages.tracker import Tracker


class ControlStep(BaseStep):
    """Reads the control topic and acts on operator commands."""

    name = "control"

    def __init__(self, control: Controller) -> None:
        self.control = control

    def run(self, now: float, deadline: float) -> None:
        self.control.poll()
        self.control.act(deadline)


class PruneStep(BaseStep):
    """Tombstones DONE entries once the committed offset is past them."""

    name = "prune"

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def run(self, now: float, deadline: float) -> None:
        self.tracker.prune_done()


class SubmitStep(BaseStep):
    """Claims and creates due INTENTs within this replica's share of the quota."""

    name = "submit"

    def __init__(self, submitter: Submitter, budget: Callable[[], Budget]) -> None:
        self.submitter = submitter
        self.budget = budget

    def run(self, now: float, deadline: float) -> None:
        self.submitter.submit_due(now, self.budget(), deadline)

    def drain(self, deadline: float) -> None:
        """Starts no upload and abandons those running: nothing is created after this."""
        now = self.submitter.ctx.clock()
        self.submitter.submit_due(now, self.budget(), deadline, stopping=True)


class TrackStep(BaseStep):
    """Polls due jobs and delivers their results."""

    name = "track"

    def __init__(self, tracker: Tracker, stopping: Callable[[], bool]) -> None:
        self.tracker = tracker
        self.stopping = stopping

    def run(self, now: float, deadline: float) -> None:
        self.tracker.track_due(now, self.stopping(), deadline)
