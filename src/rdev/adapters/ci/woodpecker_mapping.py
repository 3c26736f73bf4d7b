"""Translate Woodpecker's JSON (pipelines, workflows, steps, statuses) into the CI port's types.

Pure functions, no I/O, so the mapping table is easy to read and to test on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rdev.ports.ci import CIStep, CIWorkflow, Pipeline

#: Every Woodpecker ``StatusValue`` (pipeline ``status``, workflow/step ``state``) → our state.
#: ``created`` is Woodpecker's internal pre-queue state: to a user it is still waiting.
#: ``killed`` (stopped while running), ``canceled`` (stopped before it started) and
#: ``declined`` (an approver refused to run it) all mean "did not finish because someone
#: stopped it", hence ``cancelled``. The raw value is always kept beside the mapped one.
WOODPECKER_STATUS_MAP: dict[str, str] = {
    "created": "pending",
    "pending": "pending",
    "running": "running",
    "success": "success",
    "failure": "failure",
    "killed": "cancelled",
    "canceled": "cancelled",
    "declined": "cancelled",
    "error": "error",
    "blocked": "blocked",
    "skipped": "skipped",
}

#: Our state → the Woodpecker values it stands for (inverse of the map above).
RAW_STATUSES_FOR: dict[str, tuple[str, ...]] = {}
for _raw, _ours in WOODPECKER_STATUS_MAP.items():
    RAW_STATUSES_FOR[_ours] = (*RAW_STATUSES_FOR.get(_ours, ()), _raw)

#: Woodpecker's ``WebhookEvent`` values, for error messages.
WOODPECKER_EVENTS = (
    "push",
    "pull_request",
    "pull_request_closed",
    "pull_request_metadata",
    "tag",
    "release",
    "deployment",
    "cron",
    "manual",
)

#: Normalized states after which a pipeline (or step) will not change any more.
TERMINAL_STATES = frozenset({"success", "failure", "cancelled", "error", "skipped"})


def map_status(raw: str | None) -> str:
    """Map a Woodpecker status to ours. An unknown (newer) value maps to ``error``:
    it is not something we can call success, and the raw value is kept for the reader."""
    return WOODPECKER_STATUS_MAP.get(raw or "", "error")


def unix_to_iso(value: Any) -> str | None:
    """Woodpecker int64 unix seconds → ``2026-08-22T10:00:00Z``; 0 or missing → None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return datetime.fromtimestamp(int(value), UTC).isoformat().replace("+00:00", "Z")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def step_from_json(data: dict[str, Any]) -> CIStep:
    raw = str(data.get("state") or "")
    exit_code = data.get("exit_code")
    return CIStep(
        name=str(data.get("name") or ""),
        state=map_status(raw),
        raw_state=raw,
        exit_code=exit_code
        if isinstance(exit_code, int) and not isinstance(exit_code, bool)
        else None,
        started_at=unix_to_iso(data.get("started")),
        finished_at=unix_to_iso(data.get("finished")),
    )


def workflow_from_json(data: dict[str, Any]) -> CIWorkflow:
    raw = str(data.get("state") or "")
    children = data.get("children") or []
    steps = sorted((c for c in children if isinstance(c, dict)), key=lambda c: c.get("pid") or 0)
    return CIWorkflow(
        name=str(data.get("name") or ""),
        state=map_status(raw),
        raw_state=raw,
        steps=[step_from_json(s) for s in steps],
    )


def pipeline_from_json(data: dict[str, Any], web_url: str | None) -> Pipeline:
    """Build a :class:`Pipeline`; ``workflows`` is empty for list items (Woodpecker omits it)."""
    raw = str(data.get("status") or "")
    workflows = data.get("workflows") or []
    ordered = sorted((w for w in workflows if isinstance(w, dict)), key=lambda w: w.get("pid") or 0)
    return Pipeline(
        number=int(data["number"]),
        status=map_status(raw),
        raw_status=raw,
        event=_str_or_none(data.get("event")),
        branch=_str_or_none(data.get("branch")),
        ref=_str_or_none(data.get("ref")),
        commit_sha=_str_or_none(data.get("commit")),
        message=_str_or_none(data.get("message")),
        author=_str_or_none(data.get("author")),
        created_at=unix_to_iso(data.get("created")),
        started_at=unix_to_iso(data.get("started")),
        finished_at=unix_to_iso(data.get("finished")),
        url=web_url,
        workflows=[workflow_from_json(w) for w in ordered],
    )
