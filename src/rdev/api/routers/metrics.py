"""GET /metrics: Prometheus text format.

Unauthenticated, like /healthz, so a Prometheus server needs no API token: it shows only
totals (no project names, build ids, prompts or tokens). Restrict it at the reverse proxy
if even totals are private.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from rdev.api.deps import ContainerDep
from rdev.services.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"])


@router.get("/metrics", response_class=Response)
async def metrics(c: ContainerDep) -> Response:
    """Counters, gauges and histograms of builds, the queue, workers, webhooks and HTTP."""
    m = c.metrics
    await m.refresh()
    return Response(m.render(), media_type=CONTENT_TYPE)
