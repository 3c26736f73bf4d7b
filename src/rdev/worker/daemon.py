"""The worker daemon loop: register, heartbeat, long-poll claims, run builds, report.

It rides out server restarts and network errors: every call retries with backoff, a
result that could not be delivered is retried while its lease lives, and a lost lease
(409) stops the local run without reporting. SIGTERM: stop claiming, give running builds
``grace_seconds`` to finish, then cancel them and report them cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import platform
import random
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from rdev import __version__
from rdev.domain.models import BuildResult, ClaimedTask

from .client import LeaseLost, ProtocolError, ServerUnavailable, WorkerClient
from .executor import BuildExecutor

log = structlog.get_logger(__name__)

LOG_BATCH_LINES = 200
LOG_FLUSH_SECONDS = 0.25


@dataclass
class RunningBuild:
    task: ClaimedTask
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    lease_expires: float = 0.0
    lost: bool = False
    lines: list[str] = field(default_factory=list)
    #: How many lines of this attempt the server has stored (index of ``lines[0]``).
    sent: int = 0
    finished: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    have_lines: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class WorkerOptions:
    name: str
    slots: int = 1
    labels: list[str] = field(default_factory=list)
    agents: list[str] = field(default_factory=list)
    agent_notes: dict[str, str] = field(default_factory=dict)
    grace_seconds: float = 30.0
    claim_wait_seconds: float = 30.0


class WorkerDaemon:
    def __init__(self, client: WorkerClient, executor: BuildExecutor, options: WorkerOptions):
        self.client = client
        self.executor = executor
        self.opts = options
        self.running: dict[str, RunningBuild] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._slot_free = asyncio.Event()
        self.lease_seconds = 60.0
        self.heartbeat_interval = 15.0
        self._registered_once = False

    # ------------------------------------------------------------------ lifecycle
    async def run(self, stop: asyncio.Event) -> None:
        swept = await asyncio.to_thread(self.executor.sweep_left_behind)
        if swept:
            log.info("removed workdirs a previous process left", count=swept)
        await self._register(stop)
        if stop.is_set():
            return
        hb = asyncio.create_task(self._heartbeat_loop(stop), name="rdev-heartbeat")
        try:
            await self._claim_loop(stop)
            await self._drain()
        finally:
            hb.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await hb
            await self.client.stopped()
            log.info("worker stopped", worker=self.opts.name)

    async def _register(self, stop: asyncio.Event) -> None:
        info = {
            "name": self.opts.name,
            "hostname": platform.node(),
            "labels": self.opts.labels,
            "agents": self.opts.agents,
            "agent_notes": self.opts.agent_notes,
            "slots": self.opts.slots,
            "version": __version__,
            # This process's first registration: what the name still holds is a dead
            # predecessor's (the server takes it back at once); later ones keep it.
            "new_process": not self._registered_once,
        }
        delay = 0.5
        while not stop.is_set():
            try:
                data = await self.client.register(info, retry_for=5.0)
                self._registered_once = True
                self.lease_seconds = data.lease_seconds
                self.heartbeat_interval = data.heartbeat_interval_seconds
                log.info(
                    "worker registered",
                    worker=self.opts.name,
                    worker_id=data.worker_id,
                    agents=self.opts.agents,
                    unavailable=self.opts.agent_notes,
                )
                return
            except ServerUnavailable as exc:
                log.warning("server unreachable; will retry registering", error=str(exc))
            except ProtocolError as exc:
                log.error("registration refused", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 10.0)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            free = self.opts.slots - len(self.running)
            if free <= 0:
                self._slot_free.clear()
                await _first(stop.wait(), self._slot_free.wait())
                continue
            claim = asyncio.create_task(
                self.client.claim(free, self.opts.claim_wait_seconds), name="rdev-claim"
            )
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({claim, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if claim not in done:
                claim.cancel()
                with contextlib.suppress(BaseException):
                    await claim
                break
            try:
                tasks = claim.result()
                delay = 0.5
            except (ServerUnavailable, ProtocolError, LeaseLost) as exc:
                log.warning("claim failed; backing off", error=str(exc), retry_in=delay)
                if isinstance(exc, ProtocolError) and "404" in str(exc):
                    await self._register(stop)  # the server forgot us (new database?)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay * (0.8 + random.random() * 0.4))
                delay = min(delay * 2, 10.0)
                continue
            for task in tasks:
                self._start(task)

    def _start(self, task: ClaimedTask) -> None:
        rb = RunningBuild(task=task, lease_expires=time.monotonic() + self.lease_seconds)
        self.running[task.task_id] = rb
        t = asyncio.create_task(self._run_build(rb), name=f"rdev-build-{task.task_id}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """After stop: let running builds finish within the grace period, then cancel them."""
        if not self._tasks:
            return
        log.info(
            "stopping: waiting for running builds",
            count=len(self._tasks),
            grace_seconds=self.opts.grace_seconds,
        )
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.opts.grace_seconds)
        if pending:
            log.warning("grace period over: cancelling running builds", count=len(pending))
            for rb in self.running.values():
                rb.cancel.set()
            await asyncio.wait(pending, timeout=max(self.lease_seconds, 30.0))

    # ------------------------------------------------------------------ one build
    async def _run_build(self, rb: RunningBuild) -> None:
        task = rb.task
        structlog.contextvars.bind_contextvars(task_id=task.task_id)
        log.info("build claimed", attempt=task.attempt)
        flusher = asyncio.create_task(self._flush_logs(rb))

        async def emit(line: str) -> None:
            rb.lines.append(line)
            rb.have_lines.set()

        try:
            result, info = await self.executor.execute(task, emit, rb.cancel)
        except Exception as exc:  # noqa: BLE001 - the executor should not raise; report truthfully
            result, info = BuildResult(success=False, error=f"worker error: {exc}"), {}
        # The flusher ships what is left and stops; never cancelled mid-send (that would
        # ship a batch twice).
        rb.finished = True
        rb.done.set()
        rb.have_lines.set()
        await flusher
        try:
            if not rb.lost:
                await self._report(rb, result, info)
        finally:
            self.running.pop(task.task_id, None)
            self._slot_free.set()

    async def _flush_logs(self, rb: RunningBuild) -> None:
        """Ship log lines in order, in batches, until the build has finished."""
        while True:
            await rb.have_lines.wait()
            if not rb.finished:  # batch lines for a moment, unless the build ends first
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(rb.done.wait(), LOG_FLUSH_SECONDS)
            rb.have_lines.clear()
            final = rb.finished
            await self._send_lines(rb, final=final)
            if final:
                return

    async def _send_lines(self, rb: RunningBuild, final: bool) -> None:
        while rb.lines and not rb.lost:
            batch = rb.lines[:LOG_BATCH_LINES]
            try:
                await self.client.append_logs(
                    rb.task.task_id,
                    rb.task.lease_token,
                    [{"text": line} for line in batch],
                    retry_for=max(1.0, rb.lease_expires - time.monotonic()),
                    offset=rb.sent,
                )
            except LeaseLost:
                self._lost(rb)
                return
            except ProtocolError as exc:
                log.error("log lines refused; dropping them", error=str(exc))
                del rb.lines[: len(batch)]
                rb.sent += len(batch)
                continue
            except ServerUnavailable as exc:
                log.warning("could not ship log lines; keeping them", error=str(exc))
                if not final or rb.lease_expires <= time.monotonic():
                    return
                continue  # the client already backed off for the lease's remaining time
            del rb.lines[: len(batch)]
            rb.sent += len(batch)

    async def _report(self, rb: RunningBuild, result: BuildResult, info: dict[str, Any]) -> None:
        """Deliver the result; retried while the lease lives (heartbeats keep it alive)."""
        while True:
            remaining = rb.lease_expires - time.monotonic()
            try:
                status = await self.client.complete(
                    rb.task.task_id,
                    rb.task.lease_token,
                    result,
                    info,
                    retry_for=max(remaining, 1.0),
                )
                log.info("build reported", status=status, success=result.success)
                return
            except LeaseLost:
                log.warning("lease lost before the result was stored; dropping it")
                return
            except ServerUnavailable as exc:
                if rb.lease_expires <= time.monotonic():
                    log.error("could not deliver result before the lease expired", error=str(exc))
                    return
            except ProtocolError as exc:
                log.error("result refused", error=str(exc))
                return

    def _lost(self, rb: RunningBuild) -> None:
        if not rb.lost:
            log.warning("lease lost; stopping the local run", task_id=rb.task.task_id)
        rb.lost = True
        rb.cancel.set()

    # ------------------------------------------------------------------ heartbeat
    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while True:
            # Builds in flight: beat often, so a cancel reaches the agent within seconds.
            await asyncio.sleep(
                min(2.0, self.heartbeat_interval) if self.running else self.heartbeat_interval
            )
            tasks = {t: rb.task.lease_token for t, rb in self.running.items() if not rb.lost}
            sent_at = time.monotonic()
            try:
                answer = await self.client.heartbeat(tasks)
            except LeaseLost as exc:
                for tid in exc.tasks:
                    if tid in self.running:
                        self._lost(self.running[tid])
                continue
            except (ServerUnavailable, ProtocolError) as exc:
                log.warning("heartbeat failed", error=str(exc))
                continue
            for tid in tasks:
                if tid in self.running:
                    self.running[tid].lease_expires = sent_at + self.lease_seconds
            for tid in answer.cancel:
                rb = self.running.get(tid)
                if rb and not rb.cancel.is_set():
                    log.info("cancel requested by the server", task_id=tid)
                    rb.cancel.set()


async def _first(*aws: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
