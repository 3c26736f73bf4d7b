"""The webhook body and message ids: what the outbox stores and the sender signs.

The body is built once per event and stored as bytes: every retry sends (and signs) exactly the
same bytes under the same ``webhook-id``; only the timestamp and signature change.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from rdev.domain.models import WEBHOOK_EVENTS, Build, BuildStatus

#: The event a build's final status announces.
EVENT_FOR_FINAL_STATUS: dict[BuildStatus, str] = {
    BuildStatus.COMPLETED: "build.completed",
    BuildStatus.FAILED: "build.failed",
    BuildStatus.CANCELLED: "build.cancelled",
}


def new_message_id() -> str:
    """A fresh ``webhook-id`` (``msg_`` + 26 hex chars: no '.', safe as a header)."""
    return "msg_" + secrets.token_hex(13)


def _iso(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_body(event: str, build: Build, at: datetime) -> bytes:
    """``{"type": event, "timestamp": ISO 8601 UTC, "data": <the full build>}`` as compact JSON.

    ``data`` is the same shape as ``GET /builds/{task_id}`` (task id, project, status, spec,
    result, attempts, timestamps). The caller stores these bytes and sends them verbatim.
    """
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown webhook event {event!r}")
    payload = {"type": event, "timestamp": _iso(at), "data": build.model_dump(mode="json")}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
