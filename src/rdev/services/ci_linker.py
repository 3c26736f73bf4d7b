"""The CI linker: follows a pushed build's commit in CI and reports the outcome.

* :meth:`CILinker.on_build_complete` (run when a build finished) starts a link when a
  completed build pushed a commit and its project has CI.
* :meth:`CILinker.run_linker` (a background loop on every replica) checks leased links with
  backoff, first searching the commit's pipeline, then following it to a terminal state, and
  keeps ``builds.ci`` current.

A link's states and their legal changes are the table in ``domain/ci_links.py``; every
outcome is checked against it before it is stored. ``builds.ci`` is a
:class:`~rdev.domain.ci_links.CIProgress`: ``status`` is ``searching`` (no pipeline found
yet), one of the normalized pipeline states, ``unknown`` (gave up: no pipeline for the commit
before the deadline) or ``timeout`` (gave up: the pipeline did not finish before the
deadline). At a terminal pipeline state ``build.ci_passed`` (success, skipped) or
``build.ci_failed`` (failure, error, cancelled) is queued for the build's callback; giving up
queues nothing. A CI error (unreachable, token rejected, ...) is retried with the same backoff
until the link's deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog

from rdev.domain.ci_links import CILinkState, CIProgress, check_link_transition
from rdev.domain.errors import DatabaseUnavailable, DomainError
from rdev.domain.events import BuildFinished
from rdev.domain.models import BuildStatus
from rdev.domain.secrets import SecretScrubber
from rdev.ports.ci import CIProviderFactory, Pipeline
from rdev.ports.ci_links import CILinkStore, LinkOutcome, LinkWork

log = structlog.get_logger(__name__)

#: Step states that name a step in ``failed_steps``.
FAILED_STEP_STATES = frozenset({"failure", "error"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CILinker:
    def __init__(
        self,
        links: CILinkStore,
        provider_factory: CIProviderFactory,
        *,
        http_timeout: float = 10.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        link_timeout: float = 600.0,
        lease_seconds: float = 120.0,
        batch: int = 20,
        clock: Clock = utc_now,
    ) -> None:
        self.links = links
        self.provider_factory = provider_factory
        self.http_timeout = http_timeout
        #: The first retry waits twice this; each unchanged check doubles it.
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        #: How long after the build a link gives up.
        self.link_timeout = link_timeout
        self.lease_seconds = lease_seconds
        self.batch = batch
        self.clock = clock
        self._wake = asyncio.Event()

    async def on_build_complete(self, event: BuildFinished) -> None:
        """On BuildFinished: follow a completed build's pushed commit in CI."""
        task_id, status, result = event.task_id, event.status, event.result
        if status != BuildStatus.COMPLETED or not result.commit_sha:
            return
        build = await self.links.candidate(task_id)
        if build is None or not build.pushed or build.ci_provider == "none":
            return
        started = await self.links.start(
            build.build_id,
            result.commit_sha,
            ci=CIProgress.searching(build.ci_provider, result.commit_sha),
            deadline_at=self.clock() + timedelta(seconds=self.link_timeout),
        )
        if started:
            log.info("ci link started", task_id=task_id, commit=result.commit_sha[:12])
            self._wake.set()

    async def run_linker(self, stop: asyncio.Event) -> None:
        """Background loop: check due links until ``stop`` is set. Safe on N replicas."""
        while not stop.is_set():
            self._wake.clear()  # before the pass: a link started during it wakes the next wait
            try:
                await self.check_due()
                due = await self.links.next_due()
            except DatabaseUnavailable:
                due = None  # the database logs the outage once; the next pass tries again
            except Exception:
                log.exception("ci linker pass failed")
                due = None
            wait = self.poll_interval
            if due is not None:
                wait = min(wait, max((due - self.clock()).total_seconds(), 0.05))
            waiters = {
                asyncio.ensure_future(stop.wait()),
                asyncio.ensure_future(self._wake.wait()),
            }
            _, pending = await asyncio.wait(
                waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in pending:
                task.cancel()

    async def check_due(self) -> int:
        """One pass: lease the due links and check each once. Returns how many were checked."""
        work = await self.links.claim_due(lease_seconds=self.lease_seconds, limit=self.batch)
        for item in work:
            try:
                await self._check(item)
            except Exception:
                log.exception("ci link check failed", task_id=item.task_id)
        return len(work)

    async def _check(self, work: LinkWork) -> None:
        now = self.clock()
        ci = work.ci
        if work.project_ci is None:
            await self._finish(work, ci.given_up("unknown", "CI was removed from the project"))
            return
        settings = work.project_ci.provider_settings()
        scrubber = SecretScrubber([settings.token])
        provider = self.provider_factory(settings, self.http_timeout)
        try:
            if work.state == CILinkState.SEARCHING or ci.pipeline_number is None:
                pipeline = await provider.find_pipeline_for_commit(work.commit_sha)
            else:
                pipeline = await provider.get_pipeline(ci.pipeline_number)
        except Exception as exc:  # retried until the deadline, whatever went wrong
            # No traceback: rendered locals could hold the token. The message is scrubbed.
            error = scrubber.scrub(
                exc.detail if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("ci check failed", task_id=work.task_id, error=error)
            await self._again_or_give_up(work, ci.with_error(error), now, changed=False)
            return
        ci = ci.with_error(None)
        if pipeline is None:
            await self._again_or_give_up(work, ci, now, changed=False)
            return
        seen = _with_pipeline(ci, pipeline)
        changed = (ci.pipeline_number, ci.raw_status, ci.failed_steps) != (
            seen.pipeline_number,
            seen.raw_status,
            seen.failed_steps,
        )
        if seen.is_terminal:
            event = "build.ci_passed" if seen.passed else "build.ci_failed"
            await self._finish(work, seen, event)
            log.info(
                "ci result",
                task_id=work.task_id,
                pipeline=pipeline.number,
                status=pipeline.status,
                ci_event=event,
            )
            return
        await self._again_or_give_up(work, seen, now, changed=changed, state=CILinkState.FOLLOWING)

    async def _again_or_give_up(
        self,
        work: LinkWork,
        ci: CIProgress,
        now: datetime,
        *,
        changed: bool,
        state: CILinkState | None = None,
    ) -> None:
        """Check again after the backoff, or give up when the deadline has passed."""
        state = state or work.state
        if now >= work.deadline_at:
            if state == CILinkState.SEARCHING:
                ci = ci.given_up(
                    "unknown", "no CI pipeline for the commit was found before the deadline"
                )
            else:
                ci = ci.given_up("timeout", "the CI pipeline did not finish before the deadline")
            log.info("ci link gave up", task_id=work.task_id, status=ci.status)
            await self._finish(work, ci)
            return
        # Backoff: poll_interval doubling up to max_poll_interval; reset by any change.
        checks = 0 if changed else work.checks + 1
        interval = min(self.poll_interval * (2 ** min(checks, 16)), self.max_poll_interval)
        next_at = min(now + timedelta(seconds=interval), work.deadline_at)
        await self._record(work, LinkOutcome(state, ci, next_at, checks))

    async def _finish(self, work: LinkWork, ci: CIProgress, event: str | None = None) -> None:
        """End the link: ``done`` with the pipeline's event, or ``gave_up`` without one."""
        state = CILinkState.DONE if event else CILinkState.GAVE_UP
        await self._record(work, LinkOutcome(state, ci, self.clock(), work.checks, event))

    async def _record(self, work: LinkWork, outcome: LinkOutcome) -> None:
        check_link_transition(work.state, outcome.state)
        if not await self.links.record(work, outcome):
            log.info("ci link lease lost", task_id=work.task_id)


def _with_pipeline(ci: CIProgress, p: Pipeline) -> CIProgress:
    failed = tuple(
        step.name for wf in p.workflows for step in wf.steps if step.state in FAILED_STEP_STATES
    )
    return replace(
        ci,
        pipeline_number=p.number,
        status=p.status,
        raw_status=p.raw_status,
        url=p.url,
        failed_steps=failed,
    )
