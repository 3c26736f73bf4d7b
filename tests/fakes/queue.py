"""An in-memory WorkQueue over :class:`tests.fakes.builds.BuildData`: the rules of
``adapters/db/queue/`` (claim order and label matching, lease tokens, heartbeats,
completion with retries, the reaper) without SQL. Time comes from the data's clock."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from rdev.domain.errors import NotFound, StaleLease
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask
from rdev.ports.queue import Completion, LogLine, Outcome, QueueStats

from .builds import BuildData, BuildRow
from .notifier import FakeClaimNotifier

MAX_OUTPUT_CHARS = 256 * 1024


class FakeWorkQueue:
    def __init__(self, data: BuildData, notifier: FakeClaimNotifier | None = None) -> None:
        self.data = data
        self.notifier = notifier or FakeClaimNotifier()

    def _refusal(self, task_id: str) -> StaleLease | NotFound:
        if task_id in self.data.rows:
            return StaleLease(f"the lease on build {task_id} is no longer yours")
        return NotFound(f"no build {task_id!r}")

    def _leased(self, task_id: str, lease_token: str) -> BuildRow | None:
        r = self.data.rows.get(task_id)
        if r is None or r.task is None or r.task.state != "leased":
            return None
        return r if r.task.lease_token == lease_token else None

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
        now = self.data.clock()
        have = set(labels)
        chosen = [
            r
            for r in sorted(self.data.rows.values(), key=lambda r: r.id)
            if r.task is not None
            and r.task.state == "queued"
            and r.task.agent in agents
            and r.task.available_at <= now
            and r.task.labels <= have
        ][:max_tasks]
        if len(chosen) == max_tasks:
            self.notifier.wake_like(agents)
        secret = secrets.token_urlsafe(24)
        expires = now + timedelta(seconds=lease_seconds)
        out = []
        for r in chosen:
            assert r.task is not None
            queued_at = r.task.available_at
            r.task.state = "leased"
            r.task.lease_token = f"{secret}.{r.id}"
            r.task.lease_expires_at = expires
            r.task.worker_id = worker_id
            self.data.move(
                r,
                BuildStatus.RUNNING,
                actor=f"worker:{worker_name}",
                reason="claimed",
                at=now,
                attempts=r.build.attempts + 1,
                worker_id=worker_id,
                started_at=r.build.started_at or now,
            )
            p = self.data.projects[r.build.project_id]
            out.append(
                ClaimedTask.model_validate(
                    {
                        "task_id": r.build.task_id,
                        "lease_token": r.task.lease_token,
                        "lease_expires_at": expires,
                        "attempt": r.build.attempts,
                        "project": {
                            "id": p.id,
                            "name": p.name,
                            "repo_url": p.repo_url,
                            "default_branch": p.default_branch,
                            "agent_settings": dict(p.agent_settings),
                            "repo_host": p.repo_host,
                        },
                        "spec": r.build.spec,
                        "rendered_prompt": r.build.rendered_prompt or r.build.spec.prompt,
                        "git_credential": p.git_credential,
                        "queued_at": queued_at,
                    }
                )
            )
        return out

    async def heartbeat(
        self, *, worker_id: str, tasks: dict[str, str], lease_seconds: float
    ) -> tuple[dict[str, datetime], list[str]]:
        if not tasks:
            return {}, []
        lost = [t for t, tok in tasks.items() if self._leased(t, tok) is None]
        if lost:
            raise StaleLease(f"lost the lease on {len(lost)} task(s)", extra={"lost_tasks": lost})
        expires = self.data.clock() + timedelta(seconds=lease_seconds)
        cancels = []
        for t in tasks:
            r = self.data.rows[t]
            assert r.task is not None
            r.task.lease_expires_at = expires
            if r.build.cancel_requested:
                cancels.append(t)
        return {t: expires for t in tasks}, cancels

    async def append_logs(
        self,
        *,
        task_id: str,
        lease_token: str,
        chunks: list[LogLine],
        offset: int | None = None,
    ) -> int:
        r = self._leased(task_id, lease_token)
        if r is None:
            raise self._refusal(task_id)
        last = r.logs[-1]["seq"] if r.logs else 0
        if offset is not None:
            have = sum(1 for c in r.logs if c["attempt"] == r.build.attempts)
            chunks = chunks[max(0, have - offset) :]
        now = self.data.clock()
        for i, c in enumerate(chunks):
            r.logs.append(
                {
                    "seq": last + i + 1,
                    "attempt": r.build.attempts,
                    "stream": c.get("stream", "out"),
                    "text": c["text"],
                    "at": now,
                }
            )
        return last + len(chunks)

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
    ) -> list[Outcome]:
        actor = f"worker:{worker_name}"
        now = self.data.clock()
        seen: set[str] = set()
        outcomes: list[Outcome] = []
        for item in items:
            if item.task_id in seen:
                outcomes.append(
                    StaleLease(f"build {item.task_id} was already answered in this batch")
                )
                continue
            seen.add(item.task_id)
            r = self._leased(item.task_id, item.lease_token)
            if r is None:
                outcomes.append(self._refusal(item.task_id))
                continue
            assert r.task is not None
            result = item.result
            if len(result.output) > MAX_OUTPUT_CHARS:
                result.output = result.output[-MAX_OUTPUT_CHARS:]
            info = {**r.build.agent_info, **(item.agent_info or {})}
            if result.retryable and not result.cancelled and r.retries < max_retryable_failures:
                delay = result.retry_after_seconds or retry_delay_seconds
                self.data.move(
                    r,
                    BuildStatus.PENDING,
                    actor=actor,
                    reason=f"retryable failure, retry in {delay:.0f}s: {result.error or ''}"[:500],
                    at=now,
                    agent_info=info,
                    worker_id=None,
                )
                r.retries += 1
                r.task.state, r.task.lease_token = "queued", None
                r.task.lease_expires_at, r.task.worker_id = None, None
                r.task.available_at = now + timedelta(seconds=delay)
                outcomes.append(BuildStatus.PENDING)
                continue
            if result.cancelled:
                to, reason = BuildStatus.CANCELLED, "cancelled"
            elif result.success:
                to, reason = BuildStatus.COMPLETED, "completed"
            else:
                to, reason = BuildStatus.FAILED, (result.error or "failed")[:500]
            self.data.move(
                r,
                to,
                actor=actor,
                reason=reason,
                at=now,
                result=BuildResult.model_validate(result.model_dump()),
                agent_info=info,
            )
            r.task = None
            outcomes.append(to)
        return outcomes

    async def reap_expired(self, limit: int = 100) -> int:
        now = self.data.clock()
        return self._take_back(
            lambda t: t.lease_expires_at is not None and t.lease_expires_at < now,
            reason="lease expired (worker lost); requeued",
            limit=limit,
        )

    async def release_worker(self, worker_id: str) -> int:
        return self._take_back(
            lambda t: t.worker_id == worker_id, reason="worker restarted; requeued", limit=10_000
        )

    def _take_back(self, which: Callable[[Any], bool], *, reason: str, limit: int) -> int:
        now = self.data.clock()
        expired = [
            r
            for r in sorted(self.data.rows.values(), key=lambda r: r.id)
            if r.task is not None and r.task.state == "leased" and which(r.task)
        ][:limit]
        requeued = 0
        for r in expired:
            assert r.task is not None
            if r.build.cancel_requested:
                result = BuildResult(success=False, error="cancelled (worker lost)", cancelled=True)
                self.data.move(
                    r,
                    BuildStatus.CANCELLED,
                    actor="reaper",
                    reason="cancel requested; worker lost",
                    result=result,
                )
                r.task = None
            elif r.build.attempts >= r.build.max_attempts:
                result = BuildResult(success=False, error="worker lost")
                self.data.move(
                    r, BuildStatus.FAILED, actor="reaper", reason="worker lost", result=result
                )
                r.task = None
            else:
                self.data.move(
                    r, BuildStatus.PENDING, actor="reaper", reason=reason, worker_id=None
                )
                r.task.state, r.task.lease_token = "queued", None
                r.task.lease_expires_at, r.task.worker_id = None, None
                r.task.available_at = now
                requeued += 1
        if requeued:
            self.notifier.wake()
        return len(expired)

    async def queue_stats(self) -> QueueStats:
        queued = [
            r.task.available_at
            for r in self.data.rows.values()
            if r.task is not None and r.task.state == "queued"
        ]
        return {"depth": len(queued), "oldest_available_at": min(queued) if queued else None}
