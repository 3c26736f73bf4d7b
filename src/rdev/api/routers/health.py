"""Liveness and readiness: the only endpoints besides /metrics that need no token.

``/healthz`` answers while the process serves HTTP at all, without touching the database:
a load balancer or supervisor that restarts on a failed liveness check must not restart
every replica because PostgreSQL is restarting. ``/readyz`` says whether this replica can
do useful work now: the database answers and its schema is this code's (503 otherwise,
problem+json with Retry-After).
"""

from __future__ import annotations

from fastapi import APIRouter

from rdev import __version__
from rdev.api.deps import ContainerDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(container: ContainerDep) -> dict[str, str]:
    return {"status": "ok", "version": __version__, "database": container.db.dialect.name}


@router.get("/readyz")
async def readyz(container: ContainerDep) -> dict[str, str]:
    return {**await container.readiness(), "version": __version__}
