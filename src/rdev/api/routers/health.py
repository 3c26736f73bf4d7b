"""Liveness/readiness; the only endpoint that needs no token."""

from __future__ import annotations

from fastapi import APIRouter

from rdev import __version__
from rdev.api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(container: ContainerDep) -> dict[str, str]:
    await container.db.ping()
    return {"status": "ok", "version": __version__, "database": container.db.dialect.name}
