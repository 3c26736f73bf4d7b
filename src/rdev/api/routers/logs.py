"""GET /builds/{task_id}/logs: the stored build log, or a live Server-Sent Events stream.

With ``Accept: text/event-stream`` the answer is an SSE stream:

- ``event: log`` with ``id: <seq>`` and the chunk as JSON data, for every chunk after
  ``Last-Event-ID`` (or ``?since=``), in order, then live as the worker sends them;
- ``event: status`` (no id, so it never moves the resume point) when the build's status,
  attempt or cancel request changes — once at the start, and the final status last;
- ``event: end``, after which the server closes the stream (the build has ended).

A reconnect with ``Last-Event-ID`` resumes with exactly the chunks after it. Streams wake
on log appends in this process and, on PostgreSQL, on other replicas' ``pg_notify``; they
also re-check every second, which covers status changes made elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from rdev.api.deps import ContainerDep, PrincipalDep
from rdev.domain.auth import Principal
from rdev.domain.errors import ValidationFailed
from rdev.domain.models import Build

router = APIRouter(tags=["builds"])

PAGE = 5000
KEEPALIVE_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@router.get(
    "/builds/{task_id}/logs",
    response_model=None,
    responses={
        200: {
            "description": "JSON chunks; or an SSE stream with `Accept: text/event-stream`.",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def get_logs(
    task_id: str,
    request: Request,
    c: ContainerDep,
    p: PrincipalDep,
    since: Annotated[int, Query(ge=0)] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> dict[str, Any] | StreamingResponse:
    """Log chunks after sequence number ``since``, in order (or live, see the module doc)."""
    if "text/event-stream" in request.headers.get("accept", ""):
        return await stream_response(c, p, task_id, resume_point(last_event_id, since))
    chunks = await c.builds.logs(p, task_id, since)
    return {
        "task_id": task_id,
        "chunks": chunks,
        "last_seq": chunks[-1]["seq"] if chunks else since,
    }


def resume_point(last_event_id: str | None, since: int) -> int:
    """``Last-Event-ID`` (set by a reconnecting client) wins over ``?since=``."""
    if last_event_id is None or not last_event_id.strip():
        return since
    try:
        value = int(last_event_id.strip())
    except ValueError:
        raise ValidationFailed(
            "Last-Event-ID must be a log sequence number", field="Last-Event-ID"
        ) from None
    if value < 0:
        raise ValidationFailed("Last-Event-ID must not be negative", field="Last-Event-ID")
    return value


async def stream_response(c: Any, p: Principal, task_id: str, since: int) -> StreamingResponse:
    """Check access once (404/403 as usual), then stream. Shared with the dashboard."""
    await c.builds.get(p, task_id)
    return StreamingResponse(
        build_events(c, task_id, since), media_type="text/event-stream", headers=SSE_HEADERS
    )


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    # json.dumps never emits a raw newline, so one data line is always enough.
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def status_data(b: Build) -> dict[str, Any]:
    data: dict[str, Any] = {
        "status": b.status.value,
        "final": b.status.is_final,
        "attempt": b.attempts,
        "cancel_requested": b.cancel_requested,
    }
    if b.status.is_final:
        data["finished_at"] = b.finished_at
        if b.result is not None:
            data["success"] = b.result.success
            data["error"] = b.result.error
            data["commit_sha"] = b.result.commit_sha
    return data


async def build_events(c: Any, task_id: str, since: int) -> AsyncIterator[str]:
    """The SSE body. Reads the status BEFORE the logs on every round: once a final status
    is seen, every chunk the worker sent (it sends them before completing) is stored."""
    store, live = c.builds.builds, getattr(c, "live", None)
    last, shown = since, None
    written = time.monotonic()
    yield "retry: 2000\n\n"
    while True:
        wake = live.snapshot() if live else None
        build = await store.get(task_id)
        while True:
            chunks = await store.logs(task_id, last, PAGE)
            for ch in chunks:
                last = ch["seq"]
                yield sse("log", ch, ch["seq"])
                written = time.monotonic()
            if len(chunks) < PAGE:
                break
        key = (build.status, build.attempts, build.cancel_requested)
        if key != shown:
            shown = key
            yield sse("status", status_data(build))
            written = time.monotonic()
        if build.status.is_final:
            yield sse("end", {"last_seq": last})
            return
        if time.monotonic() - written >= KEEPALIVE_SECONDS:
            yield ": keepalive\n\n"
            written = time.monotonic()
        if live and wake is not None:
            await live.wait(wake)
        else:
            await asyncio.sleep(1.0)
