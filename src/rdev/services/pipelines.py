"""CI pipelines of a project (the read-only proxy) and the CI linker that closes the loop.

* :meth:`PipelineService.list_pipelines` / :meth:`get_pipeline` ask the project's CI provider
  (built from the project's CI settings by the injected ``provider_factory``). A project
  without CI is a 409 ``ci-not-configured`` with a hint.
* :meth:`prepare_ci_settings` validates a ``PATCH /projects/{id}`` ``ci`` object by building
  the provider from it; the settings (provider, server URL, repo) go to
  ``projects.settings["ci"]``, the token only to ``projects.ci_token``.
* The linker: :meth:`on_build_complete` (a WorkerService completion hook) starts a link when a
  completed build pushed a commit and its project has CI; :meth:`run_linker` (a background
  loop on every replica) checks leased links with backoff, first searching the commit's
  pipeline, then following it to a terminal state, and keeps ``builds.ci`` current.

``builds.ci`` = ``{provider, pipeline_number, status, raw_status, url, failed_steps,
commit_sha, reason}``. ``status`` is ``searching`` (no pipeline found yet), one of the
normalized pipeline states, ``unknown`` (gave up: no pipeline for the commit before the
deadline) or ``timeout`` (gave up: the pipeline did not finish before the deadline). At a
terminal pipeline state ``build.ci_passed`` (success, skipped) or ``build.ci_failed``
(failure, error, cancelled) is queued for the build's callback; giving up queues nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import Conflict, DomainError, ValidationFailed
from rdev.domain.models import BuildResult, BuildStatus
from rdev.domain.secrets import SecretScrubber
from rdev.ports.ci import CIProvider, CISettings, Pipeline

log = structlog.get_logger(__name__)

#: Normalized pipeline states after which nothing changes any more.
TERMINAL = frozenset({"success", "failure", "cancelled", "error", "skipped"})
PASSED = frozenset({"success", "skipped"})
#: Step states that name a step in ``failed_steps``.
FAILED_STEP_STATES = frozenset({"failure", "error"})
CI_PROVIDERS = ("woodpecker", "none")

ProviderFactory = Callable[[CISettings, float], CIProvider]


class CINotConfigured(Conflict):
    code = "ci-not-configured"


class LinkStore(Protocol):
    """What the linker needs from storage (SqlCILinkStore)."""

    async def context(self, task_id: str) -> Any: ...

    async def start(
        self, build_id: int, commit_sha: str, *, ci: dict[str, Any], deadline_at: datetime
    ) -> bool: ...

    async def claim_due(self, *, lease_seconds: float, limit: int = 20) -> list[Any]: ...

    async def record(
        self,
        work: Any,
        *,
        state: str,
        ci: dict[str, Any],
        next_check_at: datetime,
        checks: int,
        event: str | None = None,
    ) -> bool: ...

    async def next_due(self) -> datetime | None: ...


def public_ci_settings(project_settings: dict[str, Any] | None) -> dict[str, Any]:
    """The CI settings as the API shows them: never the token, only whether one is set."""
    ci = (project_settings or {}).get("ci") or {}
    provider = ci.get("provider") or "none"
    return {
        "provider": provider,
        "server_url": ci.get("server_url") if provider != "none" else None,
        "repo": ci.get("repo") if provider != "none" else None,
        "has_token": bool(ci.get("has_token")) if provider != "none" else False,
    }


def _now() -> datetime:
    return datetime.now(UTC)


class PipelineService:
    def __init__(
        self,
        projects: Any,
        links: LinkStore,
        provider_factory: ProviderFactory,
        *,
        http_timeout: float = 10.0,
        poll_interval: float = 5.0,
        max_poll_interval: float = 30.0,
        link_timeout: float = 600.0,
        lease_seconds: float = 120.0,
        batch: int = 20,
    ) -> None:
        #: The ProjectService (principal-checked project lookups).
        self.projects = projects
        self.links = links
        self.provider_factory = provider_factory
        self.http_timeout = http_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max(max_poll_interval, poll_interval)
        self.link_timeout = link_timeout
        self.lease_seconds = lease_seconds
        self.batch = batch
        self._wake = asyncio.Event()

    # -- CI settings (PATCH /projects/{id}) -----------------------------------------------------

    def prepare_ci_settings(
        self, row: dict[str, Any], patch: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Merge a ``ci`` patch with the project's current CI and validate it by building the
        provider. Returns (``settings["ci"]`` or None, the token for ``ci_token``).

        With the same provider, omitted fields keep their value (the token is write-only, so a
        client changing the URL need not send it again); ``provider: none`` clears all of it.
        """
        provider = str(patch.get("provider") or "").strip().lower()
        if provider not in CI_PROVIDERS:
            raise ValidationFailed(
                "ci.provider must be one of " + ", ".join(CI_PROVIDERS), field="ci.provider"
            )
        if provider == "none":
            return None, None
        current = (row.get("settings") or {}).get("ci") or {}
        same = current.get("provider") == provider
        merged = {
            key: patch[key] if patch.get(key) is not None else (current.get(key) if same else None)
            for key in ("server_url", "repo")
        }
        token = (
            patch.get("token")
            if patch.get("token") is not None
            else (row.get("ci_token") if same else None)
        )
        try:
            built = self.provider_factory(
                CISettings(provider, merged["server_url"] or "", merged["repo"] or "", token or ""),
                self.http_timeout,
            )
        except ValidationFailed as exc:
            raise ValidationFailed(
                SecretScrubber([token]).scrub(exc.detail),
                field=f"ci.{exc.field}" if exc.field else "ci",
            ) from None
        # The adapter normalizes (trailing '/' or '/api' removed, repo stripped): store that.
        server_url = getattr(built, "server_url", merged["server_url"])
        repo = getattr(built, "repo_full_name", merged["repo"])
        stored = {
            "provider": provider,
            "server_url": server_url,
            "repo": repo,
            "has_token": bool(token),
        }
        return stored, token

    # -- the proxy ------------------------------------------------------------------------------

    async def list_pipelines(
        self,
        principal: Principal,
        ref: str,
        *,
        page: int = 1,
        per_page: int = 25,
        branch: str | None = None,
        event: str | None = None,
        status: str | None = None,
    ) -> list[Pipeline]:
        provider = await self._provider_for(principal, ref)
        return await provider.list_pipelines(
            page=page, per_page=per_page, branch=branch, event=event, status=status
        )

    async def get_pipeline(self, principal: Principal, ref: str, number: str) -> Pipeline:
        provider = await self._provider_for(principal, ref)
        return await provider.get_pipeline(number)

    async def _provider_for(self, principal: Principal, ref: str) -> CIProvider:
        principal.require("projects:read", "builds:read")
        row = await self.projects.get_row(principal, ref)
        provider = self._provider(row.get("settings"), row.get("ci_token"))
        if provider is None:
            raise CINotConfigured(
                f"project {row['name']!r} has no CI configured; configure CI with "
                "PATCH /projects/{id} {ci: ...}",
                extra={
                    "hint": 'PATCH /projects/{id} {"ci": {"provider": "woodpecker", '
                    '"server_url": "...", "repo": "owner/name", "token": "..."}}'
                },
            )
        return provider

    def _provider(self, settings: dict[str, Any] | None, token: str | None) -> CIProvider | None:
        ci = (settings or {}).get("ci") or {}
        if (ci.get("provider") or "none") == "none":
            return None
        return self.provider_factory(
            CISettings(
                ci["provider"], ci.get("server_url") or "", ci.get("repo") or "", token or ""
            ),
            self.http_timeout,
        )

    # -- the linker -----------------------------------------------------------------------------

    async def on_build_complete(
        self, task_id: str, status: BuildStatus, result: BuildResult
    ) -> None:
        """WorkerService completion hook: follow a completed build's pushed commit in CI."""
        if status != BuildStatus.COMPLETED or not result.commit_sha:
            return
        ctx = await self.links.context(task_id)
        if ctx is None or not ctx.agent_info.get("pushed"):
            return
        ci = ctx.project_settings.get("ci") or {}
        provider = ci.get("provider") or "none"
        if provider == "none":
            return
        started = await self.links.start(
            ctx.build_id,
            result.commit_sha,
            ci=_ci_json(provider, result.commit_sha, "searching"),
            deadline_at=_now() + timedelta(seconds=self.link_timeout),
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
            except Exception:
                log.exception("ci linker pass failed")
                due = None
            wait = self.poll_interval
            if due is not None:
                wait = min(wait, max((due - _now()).total_seconds(), 0.05))
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

    async def _check(self, work: Any) -> None:
        now = _now()
        ci = dict(work.ci) or _ci_json("", work.commit_sha, "searching")
        scrubber = SecretScrubber([work.ci_token])
        provider = self._provider(work.project_settings, work.ci_token)
        if provider is None:
            ci.update(status="unknown", reason="CI was removed from the project")
            await self._finish(work, ci, None)
            return
        number = ci.get("pipeline_number")
        try:
            if work.state == "searching" or number is None:
                pipeline = await provider.find_pipeline_for_commit(work.commit_sha)
            else:
                pipeline = await provider.get_pipeline(int(number))
        except Exception as exc:  # retried until the deadline, whatever went wrong
            # No traceback: rendered locals could hold the token. The message is scrubbed.
            ci["error"] = scrubber.scrub(
                exc.detail if isinstance(exc, DomainError) else f"{type(exc).__name__}: {exc}"
            )
            log.warning("ci check failed", task_id=work.task_id, error=ci["error"])
            await self._again_or_give_up(work, ci, now, changed=False)
            return
        ci.pop("error", None)
        if pipeline is None:
            await self._again_or_give_up(work, ci, now, changed=False)
            return
        before = {k: ci.get(k) for k in ("pipeline_number", "raw_status", "failed_steps")}
        ci.update(_pipeline_fields(pipeline))
        changed = before != {k: ci[k] for k in before}
        if pipeline.status in TERMINAL:
            event = "build.ci_passed" if pipeline.status in PASSED else "build.ci_failed"
            await self._finish(work, ci, event)
            log.info(
                "ci result",
                task_id=work.task_id,
                pipeline=pipeline.number,
                status=pipeline.status,
                ci_event=event,
            )
            return
        await self._again_or_give_up(work, ci, now, changed=changed, state="following")

    async def _again_or_give_up(
        self,
        work: Any,
        ci: dict[str, Any],
        now: datetime,
        *,
        changed: bool,
        state: str | None = None,
    ) -> None:
        state = state or work.state
        if now >= work.deadline_at:
            if state == "searching":
                ci.update(
                    status="unknown",
                    reason="no CI pipeline for the commit was found before the deadline",
                )
            else:
                ci.update(
                    status="timeout", reason="the CI pipeline did not finish before the deadline"
                )
            log.info("ci link gave up", task_id=work.task_id, status=ci["status"])
            await self._finish(work, ci, None)
            return
        # Backoff: poll_interval doubling up to max_poll_interval; reset by any change.
        checks = 0 if changed else work.checks + 1
        interval = min(self.poll_interval * (2 ** min(checks, 16)), self.max_poll_interval)
        next_at = min(now + timedelta(seconds=interval), work.deadline_at)
        await self.links.record(work, state=state, ci=ci, next_check_at=next_at, checks=checks)

    async def _finish(self, work: Any, ci: dict[str, Any], event: str | None) -> None:
        await self.links.record(
            work,
            state="done" if event else "gave_up",
            ci=ci,
            next_check_at=_now(),
            checks=work.checks,
            event=event,
        )


def _ci_json(provider: str, commit_sha: str, status: str) -> dict[str, Any]:
    return {
        "provider": provider,
        "commit_sha": commit_sha,
        "pipeline_number": None,
        "status": status,
        "raw_status": None,
        "url": None,
        "failed_steps": [],
    }


def _pipeline_fields(p: Pipeline) -> dict[str, Any]:
    failed = [
        step.name for wf in p.workflows for step in wf.steps if step.state in FAILED_STEP_STATES
    ]
    return {
        "pipeline_number": p.number,
        "status": p.status,
        "raw_status": p.raw_status,
        "url": p.url,
        "failed_steps": failed,
    }
