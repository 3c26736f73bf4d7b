"""/projects"""

from __future__ import annotations

from fastapi import APIRouter, Response

from rdev.api.deps import ContainerDep, PrincipalDep, ProjectsWrite
from rdev.api.schemas import ProjectCreate, ProjectCreated, ProjectOut, ProjectPatch

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectCreated)
async def create_project(body: ProjectCreate, c: ContainerDep, p: ProjectsWrite) -> ProjectCreated:
    """Register a project (a git repository). The git credential is kept server-side only.
    The answer holds the project's webhook signing secret, shown this once."""
    created = await c.projects.create(p, body.to_registration())
    return ProjectCreated.of(created.project).model_copy(
        update={"webhook_secret": created.webhook_secret}
    )


@router.get("", response_model=list[ProjectOut])
async def list_projects(c: ContainerDep, p: PrincipalDep) -> list[ProjectOut]:
    return [ProjectOut.of(x) for x in await c.projects.list(p)]


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: str, c: ContainerDep, p: PrincipalDep) -> ProjectOut:
    """``project_id`` is the id or the name."""
    return ProjectOut.of(await c.projects.get(p, project_id))


@router.patch("/{project_id}", response_model=ProjectCreated)
async def patch_project(
    project_id: str, body: ProjectPatch, c: ContainerDep, p: ProjectsWrite
) -> ProjectCreated:
    """Change default_branch, git_credential (write-only; null clears), default_agent, labels,
    CI settings (`ci`; its token is write-only), or rotate the webhook secret. Only the fields
    sent change. `webhook_secret` is set only when `rotate_webhook_secret` was true."""
    changes = body.model_dump(exclude_unset=True)
    if body.ci is not None:
        changes["ci"] = body.ci.model_dump(exclude_unset=True)
    project, secret = await c.projects.patch(p, project_id, changes)
    return ProjectCreated.of(project).model_copy(update={"webhook_secret": secret})


@router.delete("/{project_id}", status_code=204)
async def delete_project(
    project_id: str, c: ContainerDep, p: PrincipalDep, delete_repository: bool = False
) -> Response:
    """With ``delete_repository=true`` the server's own (local) repository is removed too;
    by default it is kept."""
    await c.projects.delete(p, project_id, delete_repository=delete_repository)
    return Response(status_code=204)
