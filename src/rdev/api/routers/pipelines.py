"""/projects/{id}/pipelines: the project's CI pipelines, normalized (see docs/ci.md)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from rdev.api.deps import ContainerDep, PrincipalDep
from rdev.ports.ci import Pipeline

router = APIRouter(prefix="/projects", tags=["pipelines"])


class StepOut(BaseModel):
    name: str
    state: str = Field(
        description="normalized: pending, running, success, failure, "
        "cancelled, error, blocked, skipped"
    )
    raw_state: str = Field(description="the CI server's own value")
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


class WorkflowOut(BaseModel):
    name: str
    state: str
    raw_state: str
    steps: list[StepOut]


class PipelineOut(BaseModel):
    number: int = Field(examples=[42])
    status: str = Field(examples=["failure"], description="normalized state")
    raw_status: str = Field(examples=["failure"], description="the CI server's own value")
    event: str | None = Field(default=None, examples=["push"])
    branch: str | None = None
    ref: str | None = None
    commit_sha: str | None = None
    message: str | None = None
    author: str | None = None
    created_at: str | None = Field(default=None, examples=["2026-08-22T10:00:00Z"])
    started_at: str | None = None
    finished_at: str | None = None
    url: str | None = Field(default=None, description="the pipeline's page in the CI web UI")
    workflows: list[WorkflowOut] = Field(
        default_factory=list, description="empty in lists; filled by GET .../pipelines/{number}"
    )

    @classmethod
    def of(cls, p: Pipeline) -> PipelineOut:
        return cls.model_validate(asdict(p))


_NOT_CONFIGURED: dict[int | str, dict[str, Any]] = {
    409: {"description": "the project has no CI configured (problem+json)"}
}


@router.get(
    "/{project_id}/pipelines",
    response_model=list[PipelineOut],
    responses=_NOT_CONFIGURED,
    summary="List the project's CI pipelines, newest first",
)
async def list_pipelines(
    project_id: str,
    c: ContainerDep,
    p: PrincipalDep,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 25,
    branch: str | None = None,
    event: Annotated[
        str | None, Query(description="push, pull_request, tag, ... or a comma list")
    ] = None,
    status: Annotated[
        str | None, Query(description="a normalized state or a raw CI status")
    ] = None,
) -> list[PipelineOut]:
    """Scopes: projects:read or builds:read. Errors: 409 no CI configured, 502 CI token
    rejected or CI unreachable, 504 CI timeout, 404 unknown CI repository."""
    items = await c.pipelines.list_pipelines(
        p, project_id, page=page, per_page=per_page, branch=branch, event=event, status=status
    )
    return [PipelineOut.of(x) for x in items]


@router.get(
    "/{project_id}/pipelines/{number}",
    response_model=PipelineOut,
    responses=_NOT_CONFIGURED,
    summary="One CI pipeline with its workflows and steps",
)
async def get_pipeline(
    project_id: str,
    number: Annotated[
        str,
        Path(
            description="the pipeline number, or `latest` (newest on the default branch)",
            examples=["42", "latest"],
        ),
    ],
    c: ContainerDep,
    p: PrincipalDep,
) -> PipelineOut:
    return PipelineOut.of(await c.pipelines.get_pipeline(p, project_id, number))
