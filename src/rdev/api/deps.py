"""FastAPI dependencies: the container and the calling principal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import structlog
from fastapi import Depends, Request

from rdev.domain.auth import Principal
from rdev.domain.errors import Unauthorized

if TYPE_CHECKING:
    from rdev.bootstrap import Container


def container_of(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


async def get_container(request: Request) -> Container:
    """The container as a dependency.

    ``async`` on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a
    thread hop (and a GIL hand-off) on every request of the hot worker protocol.
    """
    return container_of(request)


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = await container_of(request).tokens.authenticate(token.strip())
    structlog.contextvars.bind_contextvars(token=principal.name)
    return principal


ContainerDep = Annotated["Container", Depends(get_container)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


def scoped(*scopes: str) -> Any:
    """A Principal dependency that also requires one of ``scopes``.

    Checked while dependencies are solved, i.e. before the body is validated: a token
    without the scope gets 403 whatever it sent.
    """

    async def dep(request: Request) -> Principal:
        principal = await get_principal(request)
        principal.require(*scopes)
        return principal

    return Depends(dep)


BuildsRead = Annotated[Principal, scoped("builds:read", "builds:write")]
BuildsWrite = Annotated[Principal, scoped("builds:write")]
ProjectsRead = Annotated[Principal, scoped("projects:read")]
ProjectsWrite = Annotated[Principal, scoped("projects:write")]
WorkerRun = Annotated[Principal, scoped("workers:run")]
Admin = Annotated[Principal, scoped("admin")]


async def project_access(request: Request, project_id: str) -> None:
    """403 before the body is read when the token may not touch ``{project_id}``."""
    principal = await get_principal(request)
    await container_of(request).projects.require_access(principal, project_id)


ProjectAccess = Depends(project_access)
