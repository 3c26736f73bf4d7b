"""The CIProvider port: read pipelines of a project's repository."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

#: Normalized pipeline/step states (the raw provider value is kept beside them).
CI_STATES = ("pending", "running", "success", "failure", "cancelled", "error", "blocked", "skipped")


@dataclass
class CIStep:
    name: str
    state: str
    raw_state: str
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class CIWorkflow:
    name: str
    state: str
    raw_state: str
    steps: list[CIStep] = field(default_factory=list)


@dataclass
class Pipeline:
    number: int
    status: str
    raw_status: str
    event: str | None
    branch: str | None
    ref: str | None
    commit_sha: str | None
    message: str | None
    author: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    url: str | None
    workflows: list[CIWorkflow] = field(default_factory=list)


@dataclass
class CISettings:
    provider: str
    server_url: str
    repo: str
    token: str = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


class CIProvider(Protocol):
    async def list_pipelines(
        self,
        page: int = 1,
        per_page: int = 25,
        branch: str | None = None,
        event: str | None = None,
        status: str | None = None,
    ) -> list[Pipeline]: ...

    async def get_pipeline(self, number: int | str) -> Pipeline:
        """``number`` may be ``"latest"``."""
        ...

    async def find_pipeline_for_commit(self, sha: str) -> Pipeline | None: ...
