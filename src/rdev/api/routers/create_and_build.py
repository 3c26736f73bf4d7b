"""POST /project/create-and-build: a new project, its scaffolded repository and a first build."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel

from rdev.api.deps import ContainerDep, PrincipalDep, scoped
from rdev.api.routers.builds import links as build_links
from rdev.api.schemas import CreateAndBuildRequest, ProjectOut
from rdev.domain.models import BuildStatus

router = APIRouter(tags=["projects"])


class CreatedAndBuiltOut(BaseModel):
    project: ProjectOut
    task_id: str
    status: BuildStatus
    links: dict[str, str]


@router.post(
    "/project/create-and-build",
    status_code=201,
    response_model=CreatedAndBuiltOut,
    dependencies=[scoped("projects:write"), scoped("builds:write")],
)
async def create_and_build(
    body: CreateAndBuildRequest,
    c: ContainerDep,
    p: PrincipalDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> CreatedAndBuiltOut:
    """Create the repository (scaffolded from ``project.template``, first commit), register the
    project and queue ``build``; needs ``projects:write`` and ``builds:write``.

    The build is checked first, so nothing is created when it could not start. If a later
    step fails, what was made is undone; the problem's ``step`` names the failed step
    (``validate``, ``repository``, ``project``, ``build``) and ``undone`` what was removed.
    Unless ``build.template`` is given, the build uses the project's template and variables.
    With an ``Idempotency-Key`` a retried request gets the first answer back.
    """
    outcome = await c.create_and_build.run(p, body.to_domain(), idempotency_key)
    project = ProjectOut.of(outcome.project)
    response.headers["Location"] = f"/projects/{outcome.project.id}"
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return CreatedAndBuiltOut(
        project=project,
        task_id=outcome.task_id,
        status=outcome.status,
        links={
            "project": f"/projects/{outcome.project.id}",
            **{("build" if k == "self" else k): v for k, v in build_links(outcome.task_id).items()},
        },
    )
