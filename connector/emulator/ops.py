"""Renders jobs as the long-running Operations the SDK and REST clients read."""

from __future__ import annotations

from .jobs import TERMINAL, Job
from .wire import JsonObj, rfc3339

_TYPES = {
    "generate": ("GenerateContentBatch", "GenerateContentBatchOutput"),
    "embed": ("EmbedContentBatch", "EmbedContentBatchOutput"),
}


def operation(job: Job, version: str) -> JsonObj:
    """`{"name", "metadata": {..., "state": "BATCH_STATE_*"}, "done", "response"|"error"}`.

    The SDK reads only `name` and `metadata`; REST callers read `done`, `response`, `error`.
    int64 fields (`batchStats.*`, `priority`) are strings, as proto3 JSON requires.
    """
    meta_type, output_type = _TYPES[job.kind]
    prefix = f"type.googleapis.com/google.ai.generativelanguage.{version}."
    pending = max(job.request_count - job.succeeded - job.failed, 0)
    metadata: JsonObj = {"@type": prefix + meta_type, "model": job.model}
    if job.display_name:
        metadata["displayName"] = job.display_name
    metadata["name"] = job.name
    if job.input_file:
        metadata["inputConfig"] = {"fileName": job.input_file}
    metadata["createTime"] = rfc3339(job.created)
    metadata["updateTime"] = rfc3339(job.updated)
    if job.ended is not None:
        metadata["endTime"] = rfc3339(job.ended)
    metadata["batchStats"] = {
        "requestCount": str(job.request_count),
        "successfulRequestCount": str(job.succeeded),
        "failedRequestCount": str(job.failed),
        "pendingRequestCount": str(pending),
    }
    metadata["state"] = f"BATCH_STATE_{job.state}"
    metadata["priority"] = str(job.priority)
    done = job.state in TERMINAL
    op: JsonObj = {"name": job.name, "metadata": metadata, "done": done}
    if job.state == "SUCCEEDED" and job.output is not None:
        metadata["output"] = job.output
        op["response"] = {"@type": prefix + output_type, **job.output}
    elif done and job.error is not None:
        op["error"] = job.error
    return op
