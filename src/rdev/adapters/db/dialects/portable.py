"""SQL both backends can run: SQLAlchemy Core statements, one small step each.

SQLite runs every hot path this way (its single writer makes the steps exclusive);
PostgreSQL runs these where its one-statement forms do not apply (a claim with labels).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Select

from rdev.domain.errors import StorageInconsistent
from rdev.domain.models import BuildStatus, ClaimedTask
from rdev.domain.state_machine import check_transition

from ..stamps import new_token, utcnow
from ..tables import build_events, builds, projects, work_tasks
from . import LEASED, QUEUED, ClaimBatch, ClaimRequest, FinalWrite, Finished


def claimable(req: ClaimRequest) -> Select[Any]:
    """Queued tasks for the offered agents, oldest first; with labels, a few more rows
    than asked for (the label subset is checked on each row)."""
    stmt = (
        select(work_tasks.c.build_id, work_tasks.c.task_id, work_tasks.c.labels)
        .where(
            work_tasks.c.state == QUEUED,
            work_tasks.c.agent.in_(req.agents),
            work_tasks.c.available_at <= req.now,
        )
        .order_by(work_tasks.c.build_id)
    )
    if req.labels:
        return stmt.limit(req.max_tasks * 4 + 16)
    return stmt.where(work_tasks.c.labels_key == "").limit(req.max_tasks)


async def claim(conn: AsyncConnection, req: ClaimRequest, locked: Select[Any]) -> ClaimBatch:
    """Lease, start and audit the rows of ``locked`` (:func:`claimable`, locked as the
    dialect locks a claim) that match the claimer's labels, in five statements."""
    rows = (await conn.execute(locked)).all()
    have = set(req.labels)
    chosen = [r for r in rows if set(r.labels or []) <= have][: req.max_tasks]
    if not chosen:
        return ClaimBatch([], False, [])
    # The lease runs from now, not from before the wait for SQLite's write lock.
    expires = utcnow() + timedelta(seconds=req.lease_seconds)
    check_transition(BuildStatus.PENDING, BuildStatus.RUNNING)
    # One random secret per claim; each task's lease token is "<secret>.<build id>".
    # Only this claimer learns the secret, so tokens stay unguessable, and one UPDATE
    # leases the whole batch.
    secret = new_token()
    ids = [r.build_id for r in chosen]
    await conn.execute(
        update(work_tasks)
        .where(work_tasks.c.build_id.in_(ids))
        .values(
            state=LEASED,
            lease_token=literal(secret + ".") + cast(work_tasks.c.build_id, String),
            lease_expires_at=expires,
            worker_id=req.worker_id,
        )
    )
    res = await conn.execute(
        update(builds)
        .where(builds.c.id.in_(ids), builds.c.status == BuildStatus.PENDING.value)
        .values(
            status=BuildStatus.RUNNING.value,
            attempts=builds.c.attempts + 1,
            worker_id=req.worker_id,
            started_at=func.coalesce(builds.c.started_at, req.now),
        )
    )
    if res.rowcount != len(ids):  # a queued task whose build is not pending: repair
        raise StorageInconsistent("work queue and builds disagree: a queued build is not pending")
    await conn.execute(
        insert(build_events).values(
            [
                {
                    "build_id": b,
                    "from_status": BuildStatus.PENDING.value,
                    "to_status": BuildStatus.RUNNING.value,
                    "at": req.now,
                    "actor": req.actor,
                    "reason": "claimed",
                }
                for b in ids
            ]
        )
    )
    details = (
        await conn.execute(
            select(
                builds.c.id,
                builds.c.task_id,
                builds.c.spec,
                builds.c.attempts,
                builds.c.rendered_prompt,
                projects.c.id.label("project_id"),
                projects.c.name,
                projects.c.repo_url,
                projects.c.default_branch,
                projects.c.git_credential,
                projects.c.settings,
                projects.c.repo_host,
                work_tasks.c.available_at.label("queued_at"),
            )
            .select_from(
                builds.join(projects).join(work_tasks, work_tasks.c.build_id == builds.c.id)
            )
            .where(builds.c.id.in_(ids))
            .order_by(builds.c.id)
        )
    ).all()
    tasks = [
        ClaimedTask.model_validate(
            {
                "task_id": d.task_id,
                "lease_token": f"{secret}.{d.id}",
                "lease_expires_at": expires,
                "attempt": d.attempts,
                "project": {
                    "id": d.project_id,
                    "name": d.name,
                    "repo_url": d.repo_url,
                    "default_branch": d.default_branch,
                    "agent_settings": (d.settings or {}).get("agent", {}),
                    "repo_host": d.repo_host,
                },
                "spec": d.spec,
                "rendered_prompt": d.rendered_prompt or d.spec["prompt"],
                "git_credential": d.git_credential,
                "queued_at": d.queued_at,
            }
        )
        for d in details
    ]
    callbacks = [(d.id, d.spec) for d in details if d.spec.get("callback_url")]
    return ClaimBatch(tasks, len(rows) >= req.max_tasks, callbacks)


async def finish(
    conn: AsyncConnection, items: list[FinalWrite], *, now: datetime, actor: str
) -> dict[str, Finished]:
    """:meth:`Dialect.finish` in portable steps: read the leases and builds, then end the
    builds with identical outcomes (the common case in a batch) together."""
    rows = {
        r.task_id: r
        for r in await conn.execute(
            select(
                builds.c.id,
                builds.c.task_id,
                builds.c.status,
                builds.c.spec,
                builds.c.agent_info,
                work_tasks.c.lease_token,
            )
            .select_from(builds.join(work_tasks, work_tasks.c.build_id == builds.c.id))
            .where(
                builds.c.task_id.in_([i.task_id for i in items]),
                work_tasks.c.state == LEASED,
            )
        )
    }
    finished: dict[str, Finished] = {}
    groups: dict[str, tuple[FinalWrite, dict[str, Any], list[int]]] = {}
    for item in items:
        row = rows.get(item.task_id)
        if row is None or row.lease_token != item.lease_token:
            continue  # no lease any more: the caller tells stale from unknown
        if row.status != BuildStatus.RUNNING.value:  # a leased build that is not running
            raise StorageInconsistent(
                "work queue and builds disagree: a leased build is not running"
            )
        info = {**(row.agent_info or {}), **item.agent_info}
        result = item.result.model_dump(mode="json")
        key = json.dumps([item.status.value, result, info, item.reason], sort_keys=True)
        groups.setdefault(key, (item, info, []))[2].append(row.id)
        finished[item.task_id] = Finished(
            build_id=row.id,
            has_callback=bool((row.spec or {}).get("callback_url")),
            pushed=bool(info.get("pushed")),
        )
    for item, info, build_ids in groups.values():
        await conn.execute(
            update(builds)
            .where(builds.c.id.in_(build_ids))
            .values(
                status=item.status.value,
                result=item.result.model_dump(mode="json"),
                agent_info=info,
                finished_at=now,
            )
        )
        await conn.execute(
            insert(build_events).values(
                [
                    {
                        "build_id": b,
                        "from_status": BuildStatus.RUNNING.value,
                        "to_status": item.status.value,
                        "at": now,
                        "actor": actor,
                        "reason": item.reason,
                    }
                    for b in build_ids
                ]
            )
        )
        await conn.execute(delete(work_tasks).where(work_tasks.c.build_id.in_(build_ids)))
    return finished


async def submit(
    conn: AsyncConnection, build: dict[str, Any], task: dict[str, Any], event: dict[str, Any]
) -> int:
    """Insert the build, its work task and its first event (one transaction: ``conn``'s)."""
    res = await conn.execute(insert(builds).values(**build))
    build_id = int(res.inserted_primary_key[0])  # type: ignore[index]
    await conn.execute(insert(work_tasks).values(build_id=build_id, **task))
    await conn.execute(insert(build_events).values(build_id=build_id, **event))
    return build_id
