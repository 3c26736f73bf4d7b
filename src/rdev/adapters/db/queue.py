"""The work queue: claim under a lease, heartbeat, log append, complete, and the reaper.

Claims lock candidate rows with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (so concurrent
claimers never wait on, or double-take, each other's rows); on SQLite the single-writer
transaction gives the same exclusivity.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import String, cast, delete, func, insert, literal, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from rdev.domain.errors import NotFound, StaleLease
from rdev.domain.models import BuildResult, BuildSpec, BuildStatus, ClaimedTask
from rdev.domain.state_machine import check_transition
from rdev.ports.queue import Completion

from .engine import Database, PgStatement
from .notify import WorkNotifier
from .outbox import enqueue, enqueue_for_status, wanted
from .rows import BUILD_COLUMNS, build_select, new_token, transition, utcnow
from .tables import build_events, build_logs, builds, projects, work_tasks

MAX_OUTPUT_CHARS = 256 * 1024

_CLAIMED = TypeAdapter(list[ClaimedTask])


#: The claim as one statement (PostgreSQL). Columns as the portable path's detail query.
_PG_CLAIM = PgStatement(
    """
WITH picked AS (
    SELECT build_id FROM work_tasks
    WHERE state = 'queued' AND agent = ANY(:agents) AND available_at <= :now
      AND labels_key = ''
    ORDER BY build_id
    LIMIT :n
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE work_tasks w
    SET state = 'leased', lease_token = :secret || w.build_id::text,
        lease_expires_at = :expires, worker_id = :wid
    FROM picked WHERE w.build_id = picked.build_id
    RETURNING w.build_id, w.available_at
), started AS (
    UPDATE builds b
    SET status = 'running', attempts = b.attempts + 1, worker_id = :wid,
        started_at = coalesce(b.started_at, :now)
    FROM leased WHERE b.id = leased.build_id AND b.status = 'pending'
    RETURNING b.id, b.task_id, b.spec, b.attempts, b.rendered_prompt, b.project_id,
              leased.available_at AS queued_at
), audit AS (
    INSERT INTO build_events (build_id, from_status, to_status, at, actor, reason)
    SELECT id, 'pending', 'running', :now, :actor, 'claimed' FROM started
)
SELECT count(*) AS n,
       CAST(json_agg(json_build_object(
           'task_id', s.task_id,
           'lease_token', :secret || s.id::text,
           'lease_expires_at', CAST(:expires AS timestamptz),
           'attempt', s.attempts,
           'project', json_build_object(
               'id', p.id, 'name', p.name, 'repo_url', p.repo_url,
               'default_branch', p.default_branch,
               'agent_settings', coalesce(p.settings -> 'agent', '{}'),
               'repo_host', p.repo_host),
           'spec', s.spec,
           'rendered_prompt', coalesce(s.rendered_prompt, s.spec ->> 'prompt'),
           'git_credential', p.git_credential,
           'queued_at', s.queued_at
       ) ORDER BY s.id) AS text) AS tasks,
       CAST(json_agg(json_build_object('id', s.id, 'spec', s.spec))
            FILTER (WHERE s.spec ->> 'callback_url' IS NOT NULL) AS text) AS callbacks
FROM started s JOIN projects p ON p.id = s.project_id
"""
)


#: Ending builds with final results as one statement (PostgreSQL): the work task is
#: deleted under the caller's lease token (the compare-and-set), the build gets its
#: status, result and merged agent_info, and an audit event is appended.
_PG_FINISH_FINAL = PgStatement(
    """
WITH input AS (
    SELECT * FROM json_to_recordset(CAST(:items AS json))
        AS i(task_id text, token text, st text, res json, info jsonb, reason text)
), done AS (
    DELETE FROM work_tasks w USING input i
    WHERE w.task_id = i.task_id AND w.lease_token = i.token AND w.state = 'leased'
    RETURNING w.build_id, i.st, i.res, i.info, i.reason
), finished AS (
    UPDATE builds b
    SET status = d.st, result = d.res,
        agent_info = CAST(coalesce(CAST(b.agent_info AS jsonb), '{}') || d.info AS json),
        finished_at = :now
    FROM done d
    WHERE b.id = d.build_id AND b.status = 'running'
    RETURNING b.id, b.task_id, d.st, d.reason, b.spec->>'callback_url' IS NOT NULL AS has_callback,
              coalesce(b.agent_info->>'pushed', 'false') = 'true' AS pushed
), audit AS (
    INSERT INTO build_events (build_id, from_status, to_status, at, actor, reason)
    SELECT id, 'running', st, :now, :actor, reason FROM finished
)
SELECT d.build_id, f.task_id, f.has_callback, f.pushed
FROM done d LEFT JOIN finished f ON f.id = d.build_id
"""
)


class SqlWorkQueue:
    def __init__(self, db: Database, notifier: WorkNotifier) -> None:
        self.db = db
        self.notifier = notifier

    # -- claim -----------------------------------------------------------------------
    async def claim(
        self,
        *,
        worker_id: str,
        worker_name: str,
        agents: list[str],
        labels: list[str],
        max_tasks: int,
        lease_seconds: float,
    ) -> list[ClaimedTask]:
        if max_tasks <= 0 or not agents:
            return []
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        have = set(labels)
        stmt = (
            select(work_tasks.c.build_id, work_tasks.c.task_id, work_tasks.c.labels)
            .where(
                work_tasks.c.state == "queued",
                work_tasks.c.agent.in_(agents),
                work_tasks.c.available_at <= now,
            )
            .order_by(work_tasks.c.build_id)
        )
        if have:
            stmt = stmt.limit(max_tasks * 4 + 16)  # filtered by label subset below
        else:
            stmt = stmt.where(work_tasks.c.labels_key == "").limit(max_tasks)
        if self.db.is_postgres and not have:
            return await self._claim_in_one_statement(
                worker_id=worker_id,
                worker_name=worker_name,
                agents=agents,
                max_tasks=max_tasks,
                now=now,
                expires=expires,
            )
        async with self.db.write() as conn:
            rows = (await conn.execute(self.db.dialect.lock_for_claim(stmt))).all()
            chosen = [r for r in rows if set(r.labels or []) <= have][:max_tasks]
            if not chosen:
                return []
            # The lease runs from now, not from before the wait for SQLite's write lock.
            expires = utcnow() + timedelta(seconds=lease_seconds)
            if len(rows) >= max_tasks:
                self.notifier.wake_like(agents)  # there may be more: pass it on
            check_transition(BuildStatus.PENDING, BuildStatus.RUNNING)
            # One random secret per claim; each task's lease token is "<secret>.<build id>".
            # Only this claimer learns the secret, so tokens stay unguessable, and one UPDATE
            # leases the whole batch.
            secret = new_token()
            ids = [r.build_id for r in chosen]
            leases = {b: f"{secret}.{b}" for b in ids}
            await conn.execute(
                update(work_tasks)
                .where(work_tasks.c.build_id.in_(ids))
                .values(
                    state="leased",
                    lease_token=literal(secret + ".") + cast(work_tasks.c.build_id, String),
                    lease_expires_at=expires,
                    worker_id=worker_id,
                )
            )
            res = await conn.execute(
                update(builds)
                .where(builds.c.id.in_(ids), builds.c.status == BuildStatus.PENDING.value)
                .values(
                    status=BuildStatus.RUNNING.value,
                    attempts=builds.c.attempts + 1,
                    worker_id=worker_id,
                    started_at=func.coalesce(builds.c.started_at, now),
                )
            )
            if res.rowcount != len(ids):  # a queued task whose build is not pending: repair
                raise RuntimeError("work queue and builds disagree")
            await conn.execute(
                insert(build_events).values(
                    [
                        {
                            "build_id": b,
                            "from_status": BuildStatus.PENDING.value,
                            "to_status": BuildStatus.RUNNING.value,
                            "at": now,
                            "actor": f"worker:{worker_name}",
                            "reason": "claimed",
                        }
                        for b in ids
                    ]
                )
            )
            details = (
                (
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
                            builds.join(projects).join(
                                work_tasks, work_tasks.c.build_id == builds.c.id
                            )
                        )
                        .where(builds.c.id.in_(ids))
                        .order_by(builds.c.id)
                    )
                )
                .mappings()
                .all()
            )
            await self._started_events(conn, details)
        return self._claimed(details, leases, expires)

    async def _started_events(self, conn: AsyncConnection, details: Any) -> None:
        for d in details:
            if d["spec"].get("callback_url") and wanted(d["spec"], "build.started"):
                await enqueue(conn, d["id"], "build.started")

    async def _claim_in_one_statement(
        self,
        *,
        worker_id: str,
        worker_name: str,
        agents: list[str],
        max_tasks: int,
        now: Any,
        expires: Any,
    ) -> list[ClaimedTask]:
        """PostgreSQL: pick (SKIP LOCKED), lease, start and audit in ONE statement.

        The same steps as the portable path, as data-modifying CTEs: one round trip
        instead of five on the hottest path of the worker protocol.
        """
        check_transition(BuildStatus.PENDING, BuildStatus.RUNNING)
        async with self.db.write() as conn:
            [row] = await self.db.driver_execute(
                conn,
                _PG_CLAIM,
                {
                    "agents": agents,
                    "now": now,
                    "n": max_tasks,
                    "secret": new_token() + ".",
                    "expires": expires,
                    "wid": worker_id,
                    "actor": f"worker:{worker_name}",
                },
            )
            if not row.n:
                return []
            if row.n >= max_tasks:
                self.notifier.wake_like(agents)  # there may be more: pass it on
            if row.callbacks:  # rare: builds with a callback may want build.started
                await self._started_events(conn, json.loads(row.callbacks))
        # PostgreSQL built the answer as one JSON document; pydantic checks it in one pass.
        return _CLAIMED.validate_json(row.tasks)

    @staticmethod
    def _claimed(details: Any, leases: dict[int, str], expires: Any) -> list[ClaimedTask]:
        return [
            ClaimedTask(
                task_id=d["task_id"],
                lease_token=leases[d["id"]],
                lease_expires_at=expires,
                attempt=d["attempts"],
                project={
                    "id": d["project_id"],
                    "name": d["name"],
                    "repo_url": d["repo_url"],
                    "default_branch": d["default_branch"],
                    "agent_settings": (d["settings"] or {}).get("agent", {}),
                    "repo_host": d["repo_host"],
                },
                spec=BuildSpec.model_validate(d["spec"]),
                rendered_prompt=d["rendered_prompt"] or d["spec"]["prompt"],
                git_credential=d["git_credential"],
                queued_at=d.get("queued_at"),
            )
            for d in details
        ]

    # -- leases ----------------------------------------------------------------------
    async def _leased(
        self, conn: AsyncConnection, task_id: str, lease_token: str
    ) -> dict[str, Any]:
        row = (
            (
                await conn.execute(
                    self.db.dialect.lock_row(
                        select(work_tasks).where(work_tasks.c.task_id == task_id)
                    )
                )
            )
            .mappings()
            .first()
        )
        if row is None or row["state"] != "leased" or row["lease_token"] != lease_token:
            exists = (
                await conn.execute(select(builds.c.id).where(builds.c.task_id == task_id))
            ).first()
            if not exists:
                raise NotFound(f"no build {task_id!r}")
            raise StaleLease(f"the lease on build {task_id} is no longer yours")
        return dict(row)

    async def heartbeat(
        self, *, worker_id: str, tasks: dict[str, str], lease_seconds: float
    ) -> tuple[dict[str, Any], list[str]]:
        """Extend the leases of ``tasks`` (task_id -> lease token).

        Returns (expiry per task, task ids with a cancel request). Any stale lease raises
        StaleLease (naming the lost tasks in ``extra``) and changes nothing.
        """
        if not tasks:
            return {}, []
        now = utcnow()
        expires = now + timedelta(seconds=lease_seconds)
        async with self.db.write() as conn:
            rows = (
                await conn.execute(
                    select(
                        work_tasks.c.task_id, work_tasks.c.lease_token, work_tasks.c.state
                    ).where(work_tasks.c.task_id.in_(list(tasks)))
                )
            ).all()
            current = {r.task_id: r for r in rows}
            lost = [
                t
                for t, tok in tasks.items()
                if t not in current or current[t].state != "leased" or current[t].lease_token != tok
            ]
            if lost:
                raise StaleLease(
                    f"lost the lease on {len(lost)} task(s)", extra={"lost_tasks": lost}
                )
            await conn.execute(
                update(work_tasks)
                .where(work_tasks.c.task_id.in_(list(tasks)))
                .values(lease_expires_at=expires)
            )
            cancels = (
                (
                    await conn.execute(
                        select(builds.c.task_id).where(
                            builds.c.task_id.in_(list(tasks)), builds.c.cancel_requested.is_(True)
                        )
                    )
                )
                .scalars()
                .all()
            )
        return {t: expires for t in tasks}, list(cancels)

    async def append_logs(
        self,
        *,
        task_id: str,
        lease_token: str,
        chunks: list[dict[str, Any]],
        offset: int | None = None,
    ) -> int:
        """Store chunks in order after the last stored one; returns the last sequence number.

        ``offset`` is the index of the first chunk within this attempt's stream. A batch the
        worker re-sends (its first try reached us but the answer was lost) is then stored
        only once: chunks this attempt already has are skipped.
        """
        async with self.db.write() as conn:
            await self._leased(conn, task_id, lease_token)
            b = (
                await conn.execute(
                    select(builds.c.id, builds.c.attempts).where(builds.c.task_id == task_id)
                )
            ).one()
            last = (
                await conn.execute(
                    select(func.coalesce(func.max(build_logs.c.seq), 0)).where(
                        build_logs.c.build_id == b.id
                    )
                )
            ).scalar_one()
            if offset is not None:
                have = (
                    await conn.execute(
                        select(func.count()).where(
                            build_logs.c.build_id == b.id, build_logs.c.attempt == b.attempts
                        )
                    )
                ).scalar_one()
                chunks = chunks[max(0, have - offset) :]
            now = utcnow()
            if chunks:
                await conn.execute(
                    insert(build_logs),
                    [
                        {
                            "build_id": b.id,
                            "seq": last + i + 1,
                            "attempt": b.attempts,
                            "stream": c.get("stream", "out"),
                            "text": c["text"],
                            "at": now,
                        }
                        for i, c in enumerate(chunks)
                    ],
                )
                await self._notify_logs(conn)
            return last + len(chunks)

    async def _notify_logs(self, conn: AsyncConnection) -> None:
        if self.db.dialect.notify_channel:
            await conn.execute(
                text("SELECT pg_notify(:c, 'log')"),
                {"c": self.db.dialect.notify_channel + "_log"},
            )

    # -- completion ------------------------------------------------------------------
    async def complete(
        self,
        *,
        task_id: str,
        lease_token: str,
        result: BuildResult,
        agent_info: dict[str, Any] | None,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> BuildStatus:
        """Store one result; StaleLease (409) when the lease is no longer the caller's."""
        [outcome] = await self.complete_many(
            [Completion(task_id, lease_token, result, agent_info)],
            worker_name=worker_name,
            retry_delay_seconds=retry_delay_seconds,
            max_retryable_failures=max_retryable_failures,
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def complete_many(
        self,
        items: list[Completion],
        *,
        worker_name: str,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> list[BuildStatus | StaleLease | NotFound]:
        """Store many results in one transaction (batch-claiming workers report in batches).

        Each item gets its own outcome: the new status, or the error for a stale lease.
        """
        actor = f"worker:{worker_name}"
        now = utcnow()
        outcomes: list[BuildStatus | StaleLease | NotFound | None] = [None] * len(items)
        seen: set[str] = set()
        for k, item in enumerate(items):  # a lease is answered once: the first result wins
            if item.task_id in seen:
                outcomes[k] = StaleLease(f"build {item.task_id} was already answered in this batch")
            seen.add(item.task_id)
        async with self.db.write() as conn:
            if self.db.is_postgres:
                # Final results (the common case) are stored by one statement; a retryable
                # failure needs the build's retry count, so it takes the locked path below.
                final = [
                    k
                    for k, i in enumerate(items)
                    if outcomes[k] is None and not (i.result.retryable and not i.result.cancelled)
                ]
                if final:
                    await self._finish_in_one_statement(conn, items, final, outcomes, actor, now)
            rest = [k for k, o in enumerate(outcomes) if o is None]
            if rest:
                done = await self._complete_locked(
                    conn,
                    [items[k] for k in rest],
                    actor=actor,
                    now=now,
                    retry_delay_seconds=retry_delay_seconds,
                    max_retryable_failures=max_retryable_failures,
                )
                for k, outcome in zip(rest, done, strict=True):
                    outcomes[k] = outcome
        return [o for o in outcomes if o is not None]

    @staticmethod
    def _final_status(result: BuildResult) -> tuple[BuildStatus, str]:
        if result.cancelled:
            return BuildStatus.CANCELLED, "cancelled"
        if result.success:
            return BuildStatus.COMPLETED, "completed"
        return BuildStatus.FAILED, (result.error or "failed")[:500]

    async def _finish_in_one_statement(
        self,
        conn: AsyncConnection,
        items: list[Completion],
        which: list[int],
        outcomes: list[Any],
        actor: str,
        now: Any,
    ) -> None:
        """PostgreSQL: end builds with final results in ONE statement (no locking read).

        Deleting the work task under the caller's lease token is the compare-and-set: a
        lease the reaper took back (or another worker now holds) matches nothing, and that
        item is answered stale. Fills ``outcomes`` at the ``which`` positions.
        """
        # One JSON document carries the batch (PostgreSQL unpacks it with json_to_recordset):
        # far cheaper to encode than six text arrays, and each result is encoded by pydantic.
        encoded: list[str] = []
        status_of: dict[str, BuildStatus] = {}
        for k in which:
            item = items[k]
            result = item.result
            if len(result.output) > MAX_OUTPUT_CHARS:
                result.output = result.output[-MAX_OUTPUT_CHARS:]
            to, reason = self._final_status(result)
            check_transition(BuildStatus.RUNNING, to)
            status_of[item.task_id] = to
            encoded.append(
                f'{{"task_id":{json.dumps(item.task_id)},"token":{json.dumps(item.lease_token)},'
                f'"st":"{to.value}","res":{result.model_dump_json()},'
                f'"info":{json.dumps(item.agent_info or {})},"reason":{json.dumps(reason)}}}'
            )
        rows = await self.db.driver_execute(
            conn,
            _PG_FINISH_FINAL,
            {"items": "[" + ",".join(encoded) + "]", "now": now, "actor": actor},
        )
        finished: dict[str, Any] = {}
        for row in rows:
            if row.task_id is None:  # a leased task whose build is not running: repair
                raise RuntimeError("work queue and builds disagree")
            finished[row.task_id] = row
        missing = [items[k].task_id for k in which if items[k].task_id not in finished]
        known = set()
        if missing:  # finished or unknown builds: which is which?
            known = set(
                (
                    await conn.execute(
                        select(builds.c.task_id).where(builds.c.task_id.in_(missing))
                    )
                ).scalars()
            )
        for k in which:
            tid = items[k].task_id
            r = finished.get(tid)
            if r is None:
                outcomes[k] = (
                    StaleLease(f"the lease on build {tid} is no longer yours")
                    if tid in known
                    else NotFound(f"no build {tid!r}")
                )
                continue
            outcomes[k] = status_of[tid]
            if r.has_callback:  # outbox rows commit with the status (rare: callbacks set)
                if r.pushed and items[k].result.commit_sha:
                    await enqueue(conn, r.build_id, "build.pushed")
                await enqueue_for_status(conn, r.build_id, status_of[tid], {"callback_url": True})

    async def _complete_locked(
        self,
        conn: AsyncConnection,
        items: list[Completion],
        *,
        actor: str,
        now: Any,
        retry_delay_seconds: float,
        max_retryable_failures: int,
    ) -> list[BuildStatus | StaleLease | NotFound]:
        """Lock each build and its work task, then store each result (any outcome)."""
        ids = [i.task_id for i in items]
        outcomes: list[BuildStatus | StaleLease | NotFound] = []
        # One query locks each build and its work task (not the project they share).
        joined = (
            await conn.execute(
                self.db.dialect.lock_row(
                    select(
                        *BUILD_COLUMNS,
                        work_tasks.c.state.label("wt_state"),
                        work_tasks.c.lease_token.label("wt_token"),
                    )
                    .select_from(
                        builds.join(projects).join(work_tasks, work_tasks.c.build_id == builds.c.id)
                    )
                    .where(builds.c.task_id.in_(ids)),
                    of=[builds, work_tasks],
                )
            )
        ).mappings()
        rows = {r["task_id"]: r for r in joined}
        known: set[str] = set()
        if len(rows) < len(set(ids)):  # finished or unknown builds: which is which?
            missing = [i for i in ids if i not in rows]
            known = set(
                (
                    await conn.execute(
                        select(builds.c.task_id).where(builds.c.task_id.in_(missing))
                    )
                ).scalars()
            )
        updates: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        pending_outbox: list[tuple[int, BuildStatus, dict[str, Any], bool]] = []
        for item in items:
            row = rows.get(item.task_id)
            if row is None and item.task_id not in known:
                outcomes.append(NotFound(f"no build {item.task_id!r}"))
                continue
            if row is None or row["wt_state"] != "leased" or (row["wt_token"] != item.lease_token):
                outcomes.append(StaleLease(f"the lease on build {item.task_id} is no longer yours"))
                continue
            result = item.result
            if len(result.output) > MAX_OUTPUT_CHARS:
                result.output = result.output[-MAX_OUTPUT_CHARS:]
            info = {**(row["agent_info"] or {}), **(item.agent_info or {})}
            retry = result.retryable and not result.cancelled
            if retry and row["retries"] < max_retryable_failures:
                delay = result.retry_after_seconds or retry_delay_seconds
                await transition(
                    conn,
                    row,
                    BuildStatus.PENDING,
                    actor=actor,
                    reason=f"retryable failure, retry in {delay:.0f}s: {result.error or ''}"[:500],
                    values={
                        "agent_info": info,
                        "retries": row["retries"] + 1,
                        "worker_id": None,
                    },
                )
                await conn.execute(
                    update(work_tasks)
                    .where(work_tasks.c.build_id == row["id"])
                    .values(
                        state="queued",
                        lease_token=None,
                        lease_expires_at=None,
                        worker_id=None,
                        available_at=now + timedelta(seconds=delay),
                    )
                )
                outcomes.append(BuildStatus.PENDING)
                continue
            to, reason = self._final_status(result)
            check_transition(BuildStatus(row["status"]), to)
            updates.append(
                {
                    "b_id": row["id"],
                    "b_status": to.value,
                    "b_result": result.model_dump(mode="json"),
                    "b_info": info,
                }
            )
            events.append(
                {
                    "build_id": row["id"],
                    "from_status": row["status"],
                    "to_status": to.value,
                    "at": now,
                    "actor": actor,
                    "reason": reason,
                }
            )
            if (row["spec"] or {}).get("callback_url"):
                pushed = bool(info.get("pushed") and result.commit_sha)
                pending_outbox.append((row["id"], to, row["spec"], pushed))
            outcomes.append(to)
        if updates:
            # Rows are locked above and their status checked: no compare-and-set needed.
            # Builds with identical outcomes (the common case in a batch) are finished
            # together. (On PostgreSQL only retryable failures out of retries come here.)
            groups: dict[str, tuple[dict[str, Any], list[int]]] = {}
            for u, ev in zip(updates, events, strict=True):
                key = json.dumps(
                    [u["b_status"], u["b_result"], u["b_info"], ev["reason"]], sort_keys=True
                )
                groups.setdefault(key, (u, []))[1].append(u["b_id"])
            for u, build_ids in groups.values():
                await conn.execute(
                    update(builds)
                    .where(builds.c.id.in_(build_ids))
                    .values(
                        status=u["b_status"],
                        result=u["b_result"],
                        agent_info=u["b_info"],
                        finished_at=now,
                    )
                )
                await conn.execute(
                    insert(build_events).values(
                        [e for e in events if e["build_id"] in set(build_ids)]
                    )
                )
                await conn.execute(delete(work_tasks).where(work_tasks.c.build_id.in_(build_ids)))
            # After the updates, so build.pushed carries the pushed commit, as on PostgreSQL.
            for build_id, to, spec, pushed in pending_outbox:
                if pushed:
                    await enqueue(conn, build_id, "build.pushed")
                await enqueue_for_status(conn, build_id, to, spec)
        return outcomes

    # -- reaper ----------------------------------------------------------------------
    async def reap_expired(self, limit: int = 100) -> int:
        """Return expired leases to pending, or end their builds; returns how many."""
        now = utcnow()
        stmt = (
            select(work_tasks.c.build_id)
            .where(work_tasks.c.state == "leased", work_tasks.c.lease_expires_at < now)
            .order_by(work_tasks.c.build_id)
            .limit(limit)
        )
        requeued = 0
        async with self.db.write() as conn:
            ids = (await conn.execute(self.db.dialect.lock_for_claim(stmt))).scalars().all()
            for build_id in ids:
                row = (
                    (await conn.execute(build_select().where(builds.c.id == build_id)))
                    .mappings()
                    .one()
                )
                if row["cancel_requested"]:
                    result = BuildResult(
                        success=False, error="cancelled (worker lost)", cancelled=True
                    )
                    await transition(
                        conn,
                        row,
                        BuildStatus.CANCELLED,
                        actor="reaper",
                        reason="cancel requested; worker lost",
                        values={"result": result.model_dump(mode="json")},
                    )
                    await conn.execute(delete(work_tasks).where(work_tasks.c.build_id == build_id))
                elif row["attempts"] >= row["max_attempts"]:
                    result = BuildResult(success=False, error="worker lost")
                    await transition(
                        conn,
                        row,
                        BuildStatus.FAILED,
                        actor="reaper",
                        reason="worker lost",
                        values={"result": result.model_dump(mode="json")},
                    )
                    await conn.execute(delete(work_tasks).where(work_tasks.c.build_id == build_id))
                else:
                    await transition(
                        conn,
                        row,
                        BuildStatus.PENDING,
                        actor="reaper",
                        reason="lease expired (worker lost); requeued",
                        values={"worker_id": None},
                    )
                    await conn.execute(
                        update(work_tasks)
                        .where(work_tasks.c.build_id == build_id)
                        .values(
                            state="queued",
                            lease_token=None,
                            lease_expires_at=None,
                            worker_id=None,
                            available_at=now,
                        )
                    )
                    requeued += 1
            if requeued and self.db.dialect.notify_channel:
                await conn.execute(
                    text("SELECT pg_notify(:c, '')"), {"c": self.db.dialect.notify_channel}
                )
        if requeued:
            self.notifier.wake()
        return len(ids)

    async def queue_stats(self) -> dict[str, Any]:
        async with self.db.read() as conn:
            row = (
                await conn.execute(
                    select(func.count(), func.min(work_tasks.c.available_at)).where(
                        work_tasks.c.state == "queued"
                    )
                )
            ).one()
        return {"depth": row[0], "oldest_available_at": row[1]}
