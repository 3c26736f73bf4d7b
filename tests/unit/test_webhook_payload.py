"""Webhook body: the documented envelope around the full build, stable bytes, safe ids."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from rdev.adapters.webhooks.payload import EVENT_FOR_FINAL_STATUS, event_body, new_message_id
from rdev.domain.models import Build, BuildResult, BuildSpec, BuildStatus


def make_build(**overrides: object) -> Build:
    fields: dict = {
        "task_id": "tsk_1",
        "project_id": "prj_1",
        "project_name": "demo",
        "status": BuildStatus.COMPLETED,
        "spec": BuildSpec(prompt="add a README", callback_url="https://bot.example/cb"),
        "result": BuildResult(success=True, output="done", commit_sha="abc123"),
        "attempts": 1,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "finished_at": datetime(2026, 1, 2, 3, 9, 5, tzinfo=UTC),
    }
    fields.update(overrides)
    return Build(**fields)


def test_body_is_the_documented_envelope_around_the_full_build() -> None:
    at = datetime(2026, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    body = event_body("build.completed", make_build(), at)
    doc = json.loads(body)
    assert doc["type"] == "build.completed"
    assert doc["timestamp"] == "2026-01-02T03:04:05Z"
    data = doc["data"]
    assert data["task_id"] == "tsk_1" and data["project_name"] == "demo"
    assert data["status"] == "completed" and data["attempts"] == 1
    assert data["spec"]["prompt"] == "add a README"
    assert data["result"]["commit_sha"] == "abc123"
    assert data["finished_at"].startswith("2026-01-02T03:09:05")
    assert event_body("build.completed", make_build(), at) == body  # same bytes every time


def test_unknown_events_and_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        event_body("build.exploded", make_build(), datetime.now(UTC))
    with pytest.raises(ValueError):
        event_body("build.completed", make_build(), datetime(2026, 1, 1))


def test_every_final_status_has_its_event() -> None:
    assert {s for s in BuildStatus if s.is_final} == set(EVENT_FOR_FINAL_STATUS)
    assert EVENT_FOR_FINAL_STATUS[BuildStatus.FAILED] == "build.failed"


def test_message_ids_are_unique_and_free_of_dots() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("msg_") and "." not in i for i in ids)
