"""The worker protocol over HTTP, and the worker registry listing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import TypeAdapter

from rdev.api.deps import ContainerDep, PrincipalDep, WorkerRun
from rdev.api.schemas import (
    BatchCompletion,
    ClaimRequest,
    Completion,
    Heartbeat,
    HeartbeatAnswer,
    LogAppend,
    WorkerRegister,
    WorkerRegistered,
)
from rdev.domain.errors import DomainError
from rdev.domain.models import BuildStatus, ClaimedTask, WorkerInfo
from rdev.ports.queue import Completion as Item
from rdev.ports.queue import LogLine

router = APIRouter(tags=["workers"])


@router.post("/workers/register", response_model=WorkerRegistered)
async def register(body: WorkerRegister, c: ContainerDep, p: WorkerRun) -> WorkerRegistered:
    """Idempotent by worker name: the same name gets the same id back."""
    wid = await c.workers.register(p, **body.model_dump())
    lease = c.settings.lease_seconds
    return WorkerRegistered(
        worker_id=wid, lease_seconds=lease, heartbeat_interval_seconds=max(1.0, lease / 4)
    )


@router.post("/workers/{worker_id}/heartbeat", response_model=HeartbeatAnswer)
async def heartbeat(
    worker_id: str, body: Heartbeat, c: ContainerDep, p: WorkerRun
) -> HeartbeatAnswer:
    """Extends the leases of the listed tasks; the answer lists cancel requests.

    A stale lease token → 409 (``lost_tasks`` names them) and nothing changes.
    """
    leases, cancels = await c.workers.heartbeat(
        p, worker_id, {t.task_id: t.lease_token for t in body.tasks}
    )
    return HeartbeatAnswer(leases=leases, cancel=cancels)


_CLAIMED = TypeAdapter(list[ClaimedTask])


@router.post(
    "/workers/{worker_id}/claim",
    response_class=Response,
    responses={200: {"model": list[ClaimedTask], "description": "The claimed tasks (maybe none)."}},
)
async def claim(worker_id: str, body: ClaimRequest, c: ContainerDep, p: WorkerRun) -> Response:
    """Long-poll (up to ``wait_seconds``, default 30) for up to ``max_tasks`` tasks."""
    tasks = await c.workers.claim(p, worker_id, body.max_tasks, body.wait_seconds)
    # Serialized once, straight from the models (no re-validation of a hot, large answer).
    return Response(_CLAIMED.dump_json(tasks), media_type="application/json")


@router.post("/workers/{worker_id}/stopped", status_code=204)
async def stopped(worker_id: str, c: ContainerDep, p: WorkerRun) -> Response:
    await c.workers.stopped(p, worker_id)
    return Response(status_code=204)


@router.post("/builds/{task_id}/logs", status_code=200)
async def append_logs(
    task_id: str, body: LogAppend, c: ContainerDep, p: WorkerRun
) -> dict[str, int]:
    """Append log chunks in order (worker only; needs the current lease token)."""
    last = await c.workers.append_logs(
        p,
        task_id,
        body.lease_token,
        [LogLine(text=ch.text, stream=ch.stream) for ch in body.chunks],
        body.offset,
    )
    return {"last_seq": last}


@router.post("/workers/{worker_id}/complete/{task_id}")
async def complete(
    worker_id: str, task_id: str, body: Completion, c: ContainerDep, p: WorkerRun
) -> dict[str, str]:
    """Report the result. A stale lease token → 409 and the stored result stays."""
    status = await c.workers.complete(
        p, worker_id, task_id, body.lease_token, body.result, body.agent_info
    )
    return {"task_id": task_id, "status": status.value}


@router.post("/workers/{worker_id}/complete")
async def complete_batch(
    worker_id: str, body: BatchCompletion, c: ContainerDep, p: WorkerRun
) -> dict[str, list[dict[str, Any]]]:
    """Report many results at once (one transaction). Each item answers with its new
    status, or with an error (``stale-lease``: that result was refused, nothing changed)."""
    items = [Item(i.task_id, i.lease_token, i.result, i.agent_info) for i in body.items]
    outcomes = await c.workers.complete_many(p, worker_id, items)
    out: list[dict[str, Any]] = []
    for item, o in zip(items, outcomes, strict=True):
        if isinstance(o, BuildStatus):
            out.append({"task_id": item.task_id, "status": o.value})
        elif isinstance(o, DomainError):
            out.append(
                {
                    "task_id": item.task_id,
                    "error": o.code,
                    "status_code": o.status,
                    "detail": o.detail,
                }
            )
        else:
            raise o
    return {"items": out}


@router.get("/workers", response_model=list[WorkerInfo])
async def list_workers(c: ContainerDep, p: PrincipalDep) -> list[WorkerInfo]:
    return await c.workers.list(p)
