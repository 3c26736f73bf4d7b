"""The worker protocol: register, heartbeat, long-poll claim, logs, complete; and the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import Forbidden, ShuttingDown
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask, WorkerInfo
from rdev.ports.workers import WorkerRecord

log = structlog.get_logger(__name__)

#: A waiting claim looks again on its own this often, should no wake-up come at all.
FALLBACK_RECHECK_SECONDS = 15.0

#: Called after a build reached a final (or pending-again) status: metrics, CI linking, ...
CompletionHook = Callable[[str, BuildStatus, BuildResult], Awaitable[None]]


class WorkerService:
    def __init__(
        self,
        *,
        workers: Any,
        queue: Any,
        notifier: Any,
        lease_seconds: float,
        claim_wait_seconds: float,
        offline_after_seconds: float,
        retry_delay_seconds: float,
        max_retryable_failures: int,
        on_complete: list[CompletionHook] | None = None,
    ) -> None:
        self.workers = workers
        self.queue = queue
        self.notifier = notifier
        self.lease_seconds = lease_seconds
        self.claim_wait_seconds = claim_wait_seconds
        self.offline_after = offline_after_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.max_retryable_failures = max_retryable_failures
        self.on_complete = on_complete or []
        #: Called with freshly claimed tasks (metrics: claim latency); must not raise.
        self.on_claim: list[Callable[[list[ClaimedTask]], Awaitable[None]]] = []
        self._worker_cache: dict[str, tuple[float, WorkerRecord]] = {}
        self._draining = False

    def drain(self) -> None:
        """Server shutdown: waiting and future claims answer "nothing" at once."""
        self._draining = True
        self.notifier.wake()

    async def register(self, principal: Principal, **info: Any) -> str:
        principal.require("workers:run")
        wid = await self.workers.register(**info)
        self._worker_cache.pop(wid, None)
        return wid

    async def _worker(self, worker_id: str) -> WorkerRecord:
        now = time.monotonic()
        hit = self._worker_cache.get(worker_id)
        if hit and hit[0] > now:
            return hit[1]
        row = await self.workers.get(worker_id)
        self._worker_cache[worker_id] = (now + 10.0, row)
        return row

    async def heartbeat(
        self, principal: Principal, worker_id: str, tasks: dict[str, str]
    ) -> tuple[dict[str, Any], list[str]]:
        principal.require("workers:run")
        await self._worker(worker_id)
        await self.workers.touch(worker_id, sorted(tasks))
        return await self.queue.heartbeat(
            worker_id=worker_id, tasks=tasks, lease_seconds=self.lease_seconds
        )

    async def claim(
        self, principal: Principal, worker_id: str, max_tasks: int, wait_seconds: float | None
    ) -> list[ClaimedTask]:
        """Long-poll: return as soon as there is work, or empty after ``wait_seconds``.

        Woken by submits (in-process, or LISTEN/NOTIFY from other replicas): a submit
        wakes one waiting claimer that can take the build. The notifier's periodic
        re-check (one query per process) wakes claimers for rows skipped while another
        claimer held them, retries whose delay has run out, and a woken claimer that
        failed.
        """
        principal.require("workers:run")
        worker = await self._worker(worker_id)
        wait = min(self.claim_wait_seconds if wait_seconds is None else wait_seconds, 60.0)
        deadline = time.monotonic() + max(wait, 0.0)
        max_tasks = max(0, min(max_tasks, worker.slots * 4, 100))
        while not self._draining:
            waiter = self.notifier.waiter(worker.agents, worker.labels)
            try:
                tasks = await self.queue.claim(
                    worker_id=worker_id,
                    worker_name=worker.name,
                    agents=worker.agents,
                    labels=worker.labels,
                    max_tasks=max_tasks,
                    lease_seconds=self.lease_seconds,
                )
                if tasks:
                    for claim_hook in self.on_claim:
                        with contextlib.suppress(Exception):
                            await claim_hook(tasks)
                    return tasks
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    # The notifier's re-check wakes us for work nobody announced; looking
                    # again on our own now and then is only a fallback.
                    await asyncio.wait_for(
                        waiter.event.wait(), timeout=min(remaining, FALLBACK_RECHECK_SECONDS)
                    )
            finally:
                self.notifier.forget(waiter)
        raise ShuttingDown("the server is shutting down; claim again shortly")

    async def append_logs(
        self,
        principal: Principal,
        task_id: str,
        lease_token: str,
        chunks: list[dict[str, Any]],
        offset: int | None = None,
    ) -> int:
        principal.require("workers:run")
        return await self.queue.append_logs(
            task_id=task_id, lease_token=lease_token, chunks=chunks, offset=offset
        )

    async def complete(
        self,
        principal: Principal,
        worker_id: str,
        task_id: str,
        lease_token: str,
        result: BuildResult,
        agent_info: dict[str, Any] | None,
    ) -> BuildStatus:
        principal.require("workers:run")
        worker = await self._worker(worker_id)
        status = await self.queue.complete(
            task_id=task_id,
            lease_token=lease_token,
            result=result,
            agent_info=agent_info,
            worker_name=worker.name,
            retry_delay_seconds=self.retry_delay_seconds,
            max_retryable_failures=self.max_retryable_failures,
        )
        for hook in self.on_complete:
            try:
                await hook(task_id, status, result)
            except Exception:  # a hook must never undo a stored result
                log.exception("completion hook failed", task_id=task_id)
        return status

    async def complete_many(
        self, principal: Principal, worker_id: str, items: list[Any]
    ) -> list[BuildStatus | Exception]:
        """Batch form of :meth:`complete`: one transaction, one outcome per item."""
        principal.require("workers:run")
        worker = await self._worker(worker_id)
        outcomes = await self.queue.complete_many(
            items,
            worker_name=worker.name,
            retry_delay_seconds=self.retry_delay_seconds,
            max_retryable_failures=self.max_retryable_failures,
        )
        if self.on_complete:
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, BuildStatus):
                    for hook in self.on_complete:
                        try:
                            await hook(item.task_id, outcome, item.result)
                        except Exception:
                            log.exception("completion hook failed", task_id=item.task_id)
        return outcomes

    async def stopped(self, principal: Principal, worker_id: str) -> None:
        principal.require("workers:run")
        await self.workers.mark_stopped(worker_id)

    async def list(self, principal: Principal) -> list[WorkerInfo]:
        if not (principal.has("workers:run") or principal.has("builds:read")):
            raise Forbidden("this token lacks the builds:read scope")
        return await self.workers.list(self.offline_after)

    async def run_reaper(self, interval: float, stop: asyncio.Event) -> None:
        """Background loop: return expired leases to the queue (or fail their builds)."""
        while not stop.is_set():
            try:
                n = await self.queue.reap_expired()
                if n:
                    log.info("reaped expired leases", count=n)
            except Exception:
                log.exception("reaper pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
