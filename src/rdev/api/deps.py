"""FastAPI dependencies: the container and the calling principal."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import structlog
from fastapi import Depends, Request

from rdev.domain.auth import Principal
from rdev.domain.errors import Unauthorized

if TYPE_CHECKING:
    from rdev.bootstrap import Container


def get_container(request: Request) -> Container:
    return request.app.state.container  # type: ignore[no-any-return]


async def get_principal(request: Request) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = await get_container(request).tokens.authenticate(token.strip())
    structlog.contextvars.bind_contextvars(token=principal.name)
    return principal


ContainerDep = Annotated["Container", Depends(get_container)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
