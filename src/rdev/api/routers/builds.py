"""/projects/{id}/builds and /builds/{task_id}"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from rdev.api.deps import BuildsWrite, ContainerDep, PrincipalDep, ProjectAccess
from rdev.api.schemas import BuildAccepted, BuildOut, BuildPage, EventOut
from rdev.domain.errors import ValidationFailed
from rdev.domain.models import Build, BuildSpec, BuildStatus

router = APIRouter(tags=["builds"])


def links(task_id: str) -> dict[str, str]:
    base = f"/builds/{task_id}"
    return {
        "self": base,
        "events": f"{base}/events",
        "logs": f"{base}/logs",
        "cancel": f"{base}/cancel",
    }


def build_out(b: Build) -> BuildOut:
    return BuildOut(
        task_id=b.task_id,
        project_id=b.project_id,
        project=b.project_name,
        status=b.status,
        spec=b.spec,
        result=b.result,
        rendered_prompt=b.rendered_prompt,
        template={"name": b.spec.template, "version": b.template_version}
        if b.spec.template
        else None,
        agent=b.agent_info,
        ci=b.ci,
        attempts=b.attempts,
        max_attempts=b.max_attempts,
        worker_id=b.worker_id,
        cancel_requested=b.cancel_requested,
        pending_reason=b.pending_reason,
        created_at=b.created_at,
        started_at=b.started_at,
        finished_at=b.finished_at,
        links=links(b.task_id),
    )


@router.post(
    "/projects/{project_id}/builds",
    status_code=202,
    response_model=BuildAccepted,
    dependencies=[ProjectAccess],
)
async def submit_build(
    project_id: str,
    spec: BuildSpec,
    c: ContainerDep,
    p: BuildsWrite,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> BuildAccepted:
    """Queue a build. With an ``Idempotency-Key`` a retried POST returns the first build."""
    build, created = await c.builds.submit(p, project_id, spec, idempotency_key)
    response.headers["Location"] = f"/builds/{build.task_id}"
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return BuildAccepted(
        task_id=build.task_id,
        status=build.status,
        created_at=build.created_at,
        links=links(build.task_id),
    )


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        return int(cursor)
    except ValueError:
        raise ValidationFailed("cursor is not one this server issued", field="cursor") from None


@router.get("/projects/{project_id}/builds", response_model=BuildPage)
async def list_project_builds(
    project_id: str,
    c: ContainerDep,
    p: PrincipalDep,
    status: Annotated[list[BuildStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> BuildPage:
    """Newest first. Pass ``next_cursor`` back as ``cursor`` for the next page."""
    return await _page(c, p, project_id, status, limit, cursor)


@router.get("/builds", response_model=BuildPage)
async def list_builds(
    c: ContainerDep,
    p: PrincipalDep,
    project: str | None = None,
    status: Annotated[list[BuildStatus] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> BuildPage:
    """All builds the token may see (or one project's), newest first, keyset-paginated."""
    return await _page(c, p, project, status, limit, cursor)


async def _page(
    c: ContainerDep,
    p: PrincipalDep,
    project: str | None,
    status: list[BuildStatus] | None,
    limit: int,
    cursor: str | None,
) -> BuildPage:
    items, nxt = await c.builds.list(
        p, project, [s.value for s in status] if status else None, limit, _cursor(cursor)
    )
    return BuildPage(items=[build_out(b) for b in items], next_cursor=str(nxt) if nxt else None)


@router.get("/builds/{task_id}", response_model=BuildOut)
async def get_build(task_id: str, c: ContainerDep, p: PrincipalDep) -> BuildOut:
    return build_out(await c.builds.get(p, task_id))


@router.post("/builds/{task_id}/cancel", response_model=BuildOut)
async def cancel_build(task_id: str, c: ContainerDep, p: PrincipalDep) -> BuildOut:
    """Pending: cancelled at once. Running: cancel requested; the worker stops the agent."""
    return build_out(await c.builds.cancel(p, task_id))


@router.get("/builds/{task_id}/events", response_model=list[EventOut], response_model_by_alias=True)
async def build_events(task_id: str, c: ContainerDep, p: PrincipalDep) -> list[EventOut]:
    """The audit trail: every status change with who and why."""
    events = await c.builds.events(p, task_id)
    return [EventOut(**e.model_dump()) for e in events]
