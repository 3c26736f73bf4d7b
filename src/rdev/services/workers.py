"""The worker protocol: register, heartbeat, long-poll claim, logs, complete; and the reaper."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import DatabaseUnavailable, Forbidden, ShuttingDown
from rdev.domain.events import BuildFinished, BuildsClaimed
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask, WorkerInfo
from rdev.ports.credentials import ClaimCredentials
from rdev.ports.notifier import ClaimNotifier
from rdev.ports.queue import Completion, LogLine, Outcome, WorkQueue
from rdev.ports.workers import WorkerRecord, WorkerStore
from rdev.services.events import EventBus

log = structlog.get_logger(__name__)

#: A waiting claim looks again on its own this often, should no wake-up come at all.
FALLBACK_RECHECK_SECONDS = 15.0

#: How long a worker's registration is served from memory (claims, completions and
#: heartbeats all need it; a re-registration through this service drops it at once).
WORKER_CACHE_SECONDS = 10.0

#: The longest a claim long-polls, whatever the worker asks for.
MAX_CLAIM_WAIT_SECONDS = 60.0


class WorkerService:
    """The worker protocol's rules over the work queue and the worker registry.

    What happens around a claim or a result is not this service's business: it publishes
    :class:`BuildsClaimed` and :class:`BuildFinished` on ``events`` once they are stored, and
    the subscribers wired in ``bootstrap.py`` (callbacks, CI linking, metrics) react.
    """

    def __init__(
        self,
        *,
        workers: WorkerStore,
        queue: WorkQueue,
        notifier: ClaimNotifier,
        events: EventBus,
        credentials: ClaimCredentials,
        lease_seconds: float,
        claim_wait_seconds: float,
        offline_after_seconds: float,
        retry_delay_seconds: float,
        max_retryable_failures: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.workers = workers
        self.queue = queue
        self.notifier = notifier
        self.events = events
        #: Mints git credentials the queue cannot know (the local host's task credentials).
        self.credentials = credentials
        self.lease_seconds = lease_seconds
        self.claim_wait_seconds = claim_wait_seconds
        self.offline_after = offline_after_seconds
        self.retry_delay_seconds = retry_delay_seconds
        self.max_retryable_failures = max_retryable_failures
        #: Monotonic seconds: the claim's wait deadline and the registration cache.
        self.clock = clock
        self._worker_cache: dict[str, tuple[float, WorkerRecord]] = {}
        self._draining = False

    def drain(self) -> None:
        """Server shutdown: waiting and future claims answer "nothing" at once."""
        self._draining = True
        self.notifier.wake()

    async def register(
        self,
        principal: Principal,
        *,
        name: str,
        hostname: str | None = None,
        labels: list[str] | None = None,
        agents: list[str] | None = None,
        agent_notes: dict[str, str] | None = None,
        slots: int = 1,
        version: str | None = None,
        new_process: bool = False,
    ) -> str:
        """Idempotent by name; the worker's cached registration is dropped, so the next
        claim sees its new agents, labels and slots.

        ``new_process``: the first registration of a freshly started worker process. Any
        lease the name still holds belongs to the process before it, which is gone (a
        crash, a kill, an all-in-one restart): those builds are taken back at once instead
        of waiting out their lease. A process re-registering later (the server forgot it)
        sends False and keeps its leases.
        """
        principal.require("workers:run")
        wid = await self.workers.register(
            name=name,
            hostname=hostname,
            labels=labels or [],
            agents=agents or [],
            agent_notes=agent_notes or {},
            slots=slots,
            version=version,
        )
        self._worker_cache.pop(wid, None)
        if new_process:
            released = await self.queue.release_worker(wid)
            if released:
                log.info("worker restarted; took back its previous leases", count=released)
        return wid

    async def _worker(self, worker_id: str) -> WorkerRecord:
        now = self.clock()
        hit = self._worker_cache.get(worker_id)
        if hit and hit[0] > now:
            return hit[1]
        record = await self.workers.get(worker_id)
        self._worker_cache[worker_id] = (now + WORKER_CACHE_SECONDS, record)
        return record

    async def heartbeat(
        self, principal: Principal, worker_id: str, tasks: dict[str, str]
    ) -> tuple[dict[str, datetime], list[str]]:
        """Extend the leases of ``tasks`` (task id -> lease token): (new expiries, task ids
        with a cancel request). A stale lease is a StaleLease and extends nothing."""
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
        wait = self.claim_wait_seconds if wait_seconds is None else wait_seconds
        deadline = self.clock() + max(min(wait, MAX_CLAIM_WAIT_SECONDS), 0.0)
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
                    tasks = await self.credentials.add_credentials(tasks)
                    await self.events.publish(BuildsClaimed(tuple(tasks)))
                    return tasks
                remaining = deadline - self.clock()
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
        chunks: list[LogLine],
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
        """Store a result under its lease; BuildFinished carries the status stored (pending
        again for a retryable failure with retries left)."""
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
        await self.events.publish(BuildFinished(task_id, status, result))
        return status

    async def complete_many(
        self, principal: Principal, worker_id: str, items: list[Completion]
    ) -> list[Outcome]:
        """Batch form of :meth:`complete`: one transaction, one outcome per item; a
        BuildFinished for each stored result, none for a refused one."""
        principal.require("workers:run")
        worker = await self._worker(worker_id)
        outcomes = await self.queue.complete_many(
            items,
            worker_name=worker.name,
            retry_delay_seconds=self.retry_delay_seconds,
            max_retryable_failures=self.max_retryable_failures,
        )
        if self.events.subscribed(BuildFinished):
            for item, outcome in zip(items, outcomes, strict=True):
                if isinstance(outcome, BuildStatus):
                    await self.events.publish(BuildFinished(item.task_id, outcome, item.result))
        return outcomes

    async def stopped(self, principal: Principal, worker_id: str) -> None:
        principal.require("workers:run")
        await self.workers.mark_stopped(worker_id)

    async def list(self, principal: Principal) -> list[WorkerInfo]:
        if not (principal.has("workers:run") or principal.has("builds:read")):
            raise Forbidden("this token lacks the builds:read scope")
        return await self.workers.list(self.offline_after)

    async def reap(self) -> int:
        """One pass of the reaper: take back expired leases. A build goes back to pending,
        or ends (cancelled when a cancel was asked for, failed when its attempts are used
        up). Returns how many leases were taken back."""
        n = await self.queue.reap_expired()
        if n:
            log.info("reaped expired leases", count=n)
        return n

    async def run_reaper(self, interval: float, stop: asyncio.Event) -> None:
        """Background loop: :meth:`reap` every ``interval`` seconds until ``stop`` is set."""
        while not stop.is_set():
            try:
                await self.reap()
            except DatabaseUnavailable:
                pass  # the database logs the outage once; the next pass tries again
            except Exception:
                log.exception("reaper pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
