"""/projects/{id}/domains (a project's hostnames and aliases) and /domains (the export).

The paths, the ``domains`` tag and the schema names are the public API's and keep "domain";
behind them is the HostnameService (``container.hostnames``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from rdev.api.deps import ContainerDep, PrincipalDep, ProjectAccess, scoped
from rdev.services.hostnames import Hostname, ProjectHostnames

router = APIRouter(tags=["domains"])


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    domain: str = Field(
        min_length=1,
        max_length=1024,
        description="The alias; Unicode names are accepted and stored as A-labels.",
        examples=["www.shop.example.com"],
    )


class HostnameOut(BaseModel):
    domain: str = Field(description="ASCII (A-label) form, as in DNS", examples=["shop.apps.test"])
    unicode: str = Field(description="the same name for people (U-labels)")
    kind: Literal["canonical", "alias"]
    state: str = Field(
        description="canonical: always active (the operator points it, e.g. by a wildcard); "
        "alias: pending (being placed), active (served), deleting (being removed)"
    )
    target: str | None = Field(default=None, description="an alias's CNAME target")
    created_at: datetime | None = None

    @classmethod
    def of(cls, h: Hostname) -> HostnameOut:
        return cls(
            domain=h.domain,
            unicode=h.unicode,
            kind=h.kind,
            state=h.state,
            target=h.target,
            created_at=h.created_at,
        )


class ProjectHostnamesOut(BaseModel):
    project_id: str
    project_name: str
    canonical: HostnameOut
    aliases: list[HostnameOut]

    @classmethod
    def of(cls, p: ProjectHostnames) -> ProjectHostnamesOut:
        return cls(
            project_id=p.project_id,
            project_name=p.project_name,
            canonical=HostnameOut.of(p.canonical),
            aliases=[HostnameOut.of(a) for a in p.aliases],
        )


class DomainsExport(BaseModel):
    apps_domain: str
    dns_provider: str
    projects: list[ProjectHostnamesOut]


@router.get("/projects/{project_id}/domains", response_model=ProjectHostnamesOut)
async def list_domains(project_id: str, c: ContainerDep, p: PrincipalDep) -> ProjectHostnamesOut:
    """The project's canonical hostname and its aliases, each with its state."""
    return ProjectHostnamesOut.of(await c.hostnames.list_for_project(p, project_id))


@router.post(
    "/projects/{project_id}/domains",
    dependencies=[ProjectAccess, scoped("projects:write", "domains:write")],
    status_code=201,
    response_model=HostnameOut,
    responses={200: {"description": "the alias already belonged to this project"}},
)
async def add_domain(
    project_id: str, body: DomainCreate, c: ContainerDep, p: PrincipalDep, response: Response
) -> HostnameOut:
    """Add an alias: a CNAME to the canonical hostname. 201 when created, 200 when the
    project already had it; 409 when another project has it or DNS holds other records
    there; 502 when the DNS server fails (nothing is kept)."""
    hostname, created = await c.hostnames.add(p, project_id, body.domain)
    if not created:
        response.status_code = 200
    return HostnameOut.of(hostname)


@router.delete("/projects/{project_id}/domains/{domain}", status_code=204)
async def remove_domain(project_id: str, domain: str, c: ContainerDep, p: PrincipalDep) -> Response:
    """Remove an alias and its CNAME (404 when the project has no such alias)."""
    await c.hostnames.remove(p, project_id, domain)
    return Response(status_code=204)


@router.get("/domains", response_model=DomainsExport)
async def export_domains(c: ContainerDep, p: PrincipalDep) -> DomainsExport:
    """Every visible project's hostnames (canonical and active aliases), for a reverse
    proxy or an external DNS tool."""
    projects = await c.hostnames.export(p)
    return DomainsExport(
        apps_domain=c.hostnames.apps_domain,
        dns_provider=c.hostnames.dns.name,
        projects=[ProjectHostnamesOut.of(x) for x in projects],
    )
