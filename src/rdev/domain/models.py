"""Domain models: what a build, a project, a worker and a result are."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class BuildStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({BuildStatus.COMPLETED, BuildStatus.FAILED, BuildStatus.CANCELLED})

WEBHOOK_EVENTS = (
    "build.started",
    "build.pushed",
    "build.completed",
    "build.failed",
    "build.cancelled",
    "build.ci_passed",
    "build.ci_failed",
)
DEFAULT_WEBHOOK_EVENTS = ("build.completed", "build.failed", "build.cancelled")


class BuildSpec(BaseModel):
    """What a bot asks for. Validated at submit; stored verbatim with the build."""

    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, description="What the agent should do.")
    template: str | None = Field(default=None, description="Template whose prompt wraps this one.")
    variables: dict[str, Any] = Field(default_factory=dict)
    auto_commit: bool = False
    auto_push: bool = False
    callback_url: str | None = None
    events: list[str] | None = Field(
        default=None, description="Webhook events to send; default completed/failed/cancelled."
    )
    agent: str | None = Field(default=None, description="Code agent; default from server config.")
    model: str | None = None
    branch: str | None = Field(default=None, max_length=255)
    timeout_seconds: int | None = Field(default=None, ge=1, le=86400)
    labels: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(default=None, ge=1, le=10000)
    max_cost_usd: float | None = Field(default=None, gt=0)
    system_prompt: str | None = None

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must not be blank")
        return v

    @field_validator("callback_url")
    @classmethod
    def _callback_scheme(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit

        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("callback_url must be an absolute http or https URL")
        return v

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        unknown = [e for e in v if e not in WEBHOOK_EVENTS]
        if unknown:
            raise ValueError(f"unknown event(s) {unknown}; known: {list(WEBHOOK_EVENTS)}")
        return v

    @field_validator("auto_push")
    @classmethod
    def _push_needs_commit(cls, v: bool, info: ValidationInfo) -> bool:
        if v and not info.data.get("auto_commit"):
            raise ValueError("auto_push requires auto_commit")
        return v


class FileChange(BaseModel):
    path: str
    change: str = Field(description="added | modified | deleted | renamed")
    old_path: str | None = None


class BuildResult(BaseModel):
    """What a build produced: the truthful answer a bot waits for."""

    success: bool
    output: str = ""
    error: str | None = None
    commit_sha: str | None = None
    files_changed: list[FileChange] = Field(default_factory=list)
    duration_ms: int = 0
    artifacts: dict[str, Any] = Field(default_factory=dict)
    cancelled: bool = Field(default=False, description="The build stopped because of a cancel.")
    retryable: bool = Field(
        default=False, description="A transient failure (e.g. model API 429): retry later."
    )
    retry_after_seconds: float | None = None


class Build(BaseModel):
    task_id: str
    project_id: str
    project_name: str
    status: BuildStatus
    spec: BuildSpec
    result: BuildResult | None = None
    attempts: int = 0
    max_attempts: int = 3
    worker_id: str | None = None
    cancel_requested: bool = False
    rendered_prompt: str | None = None
    template_version: str | None = None
    agent_info: dict[str, Any] = Field(default_factory=dict)
    ci: dict[str, Any] | None = None
    pending_reason: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class BuildEvent(BaseModel):
    seq: int
    task_id: str
    from_status: BuildStatus | None
    to_status: BuildStatus
    at: datetime
    actor: str
    reason: str | None = None


class Project(BaseModel):
    id: str
    name: str
    repo_url: str
    default_branch: str = "main"
    has_git_credential: bool = False
    default_agent: str | None = None
    labels: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime


class WorkerInfo(BaseModel):
    id: str
    name: str
    hostname: str | None = None
    labels: list[str] = Field(default_factory=list)
    agents: list[str] = Field(default_factory=list)
    agent_notes: dict[str, str] = Field(default_factory=dict)
    slots: int = 1
    version: str | None = None
    online: bool = False
    last_heartbeat_at: datetime | None = None
    registered_at: datetime
    current_tasks: list[str] = Field(default_factory=list)


class ClaimedProject(BaseModel):
    """The project of a claimed build, as much as a worker needs to check it out and run it.

    Part of the worker protocol: its fields are the JSON keys of a claim's ``project``.
    """

    id: str
    name: str
    repo_url: str
    default_branch: str
    #: The project's ``settings["agent"]``: defaults for model, max_turns, max_cost_usd and
    #: system_prompt when the spec leaves them out (free-form: the agents decide the keys).
    agent_settings: dict[str, Any] = Field(default_factory=dict)
    #: Which repo host made the repository (``local``, ``gitea``), None for one brought in.
    repo_host: str | None = None


class ClaimedTask(BaseModel):
    """What a worker gets for a claim: everything it needs to run the build."""

    task_id: str
    lease_token: str
    lease_expires_at: datetime
    attempt: int
    project: ClaimedProject
    spec: BuildSpec
    rendered_prompt: str
    git_credential: str | None = None
    #: When the task became claimable (submit, requeue or retry time): for claim latency.
    queued_at: datetime | None = None


#: Every agent a BuildSpec may name; whether a worker offers it is decided at run time.
KNOWN_AGENTS = ("command", "claude-code", "opencode")
