"""The `/_emulator/` control API: lets tests in other processes steer the emulator."""

from __future__ import annotations

import re

from .messages import Request, Response
from .ops import operation
from .service import Service
from .wire import ApiError, JsonObj, loads_lenient, rfc3339

_FORCE = re.compile(r"^/_emulator/batches/(?:batches/)?(?P<id>[^:/]+):force$")


class Control:
    """Stats, clock, forced states, runtime knobs and reset. No API key needed."""

    def __init__(self, service: Service) -> None:
        self._svc = service

    def handle(self, req: Request) -> Response:
        """Dispatch one control request."""
        path, method = req.path.rstrip("/"), req.method
        if path == "/_emulator/health":
            return Response.json({"ok": True})
        if path == "/_emulator/stats" and method == "GET":
            return Response.json(self.stats())
        if path == "/_emulator/config":
            if method == "GET":
                return Response.json(self._svc.config.to_dict())
            if method == "POST":
                changes = loads_lenient(req.body.read_all())
                if not isinstance(changes, dict):
                    raise ApiError(400, "config changes must be a JSON object")
                try:
                    return Response.json(self._svc.update_config(changes).to_dict())
                except ValueError as exc:
                    raise ApiError(400, str(exc)) from None
        if path == "/_emulator/clock" and method == "GET":
            return Response.json(self.clock())
        if path == "/_emulator/clock/advance" and method == "POST":
            body = loads_lenient(req.body.read_all())
            try:
                seconds = float(body.get("seconds", 0)) if isinstance(body, dict) else float(body)
                self._svc.clock.advance(seconds)
            except (TypeError, ValueError) as exc:
                raise ApiError(400, f"bad clock advance: {exc}") from None
            return Response.json(self.clock())
        if path == "/_emulator/reset" and method == "POST":
            self._svc.jobs.reset()
            self._svc.files.reset()
            self._svc.reset_calls()
            return Response.json({})
        if (m := _FORCE.match(path)) and method == "POST":
            body = loads_lenient(req.body.read_all())
            state = body.get("state") if isinstance(body, dict) else None
            if not isinstance(state, str):
                raise ApiError(400, 'expected {"state": "FAILED"|"EXPIRED"|...}')
            return Response.json(self.force(m.group("id"), state))
        raise ApiError(404, f"Unknown control path {req.path} ({method}).")

    def stats(self) -> JsonObj:
        """Batch and file counts, calls per API method and the calls being answered now."""
        return {
            "batches": self._svc.jobs.stats(),
            "files": self._svc.files.stats(),
            "calls": self._svc.call_counts(),
            "in_flight": self._svc.in_flight_counts(),
            "clock": self.clock(),
        }

    def clock(self) -> JsonObj:
        """The emulator's time and how far it was advanced."""
        now = self._svc.clock.now()
        return {"now": rfc3339(now), "epoch": now, "offset_s": self._svc.clock.offset}

    def force(self, job_id: str, state: str) -> JsonObj:
        """Force a job's state and return its Operation."""
        job = self._svc.jobs.force(job_id.removeprefix("batches/"), state)
        self._svc.outputs.ensure(job)
        return operation(job, "v1beta")
