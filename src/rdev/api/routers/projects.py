"""/projects"""

from __future__ import annotations

from fastapi import APIRouter, Response

from rdev.api.deps import ContainerDep, PrincipalDep
from rdev.api.schemas import ProjectCreate, ProjectOut

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectOut)
async def create_project(body: ProjectCreate, c: ContainerDep, p: PrincipalDep) -> ProjectOut:
    """Register a project (a git repository). The git credential is kept server-side only."""
    project = await c.projects.create(p, **body.model_dump())
    return ProjectOut.of(project)


@router.get("", response_model=list[ProjectOut])
async def list_projects(c: ContainerDep, p: PrincipalDep) -> list[ProjectOut]:
    return [ProjectOut.of(x) for x in await c.projects.list(p)]


@router.get("/{project_id}", response_model=ProjectOut)
async def get_project(project_id: str, c: ContainerDep, p: PrincipalDep) -> ProjectOut:
    """``project_id`` is the id or the name."""
    return ProjectOut.of(await c.projects.get(p, project_id))


@router.delete("/{project_id}", status_code=204)
async def delete_project(project_id: str, c: ContainerDep, p: PrincipalDep) -> Response:
    await c.projects.delete(p, project_id)
    return Response(status_code=204)
