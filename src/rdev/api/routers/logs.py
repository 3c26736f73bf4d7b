"""GET /builds/{task_id}/logs: the stored build log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from rdev.api.deps import ContainerDep, PrincipalDep

router = APIRouter(tags=["builds"])


@router.get("/builds/{task_id}/logs")
async def get_logs(
    task_id: str, c: ContainerDep, p: PrincipalDep, since: Annotated[int, Query(ge=0)] = 0
) -> dict[str, Any]:
    """Log chunks after sequence number ``since``, in order."""
    chunks = await c.builds.logs(p, task_id, since)
    return {
        "task_id": task_id,
        "chunks": chunks,
        "last_seq": chunks[-1]["seq"] if chunks else since,
    }
