"""Build use cases: submit, read, list, cancel."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable

from rdev.domain.auth import Principal
from rdev.domain.errors import NotFound, ValidationFailed
from rdev.domain.models import KNOWN_AGENTS, Build, BuildEvent, BuildSpec, BuildStatus
from rdev.ports.builds import BuildStore, LogChunk
from rdev.ports.projects import ProjectDefaults, ProjectRecord, ProjectStore
from rdev.ports.templates import TemplateProvider
from rdev.ports.workers import WorkerStore

#: Checks a callback URL at submit time; raises ValidationFailed(field="callback_url").
CallbackCheck = Callable[[str], Awaitable[None]]

#: What :meth:`BuildService.prepare` settles: (spec with defaults filled in, agent,
#: prompt to run, template name, template version).
Prepared = tuple[BuildSpec, str, str, str | None, str | None]


class BuildService:
    """Submit, read, list and cancel builds, and say why a pending build waits.

    ``templates`` renders a spec's template prompt (None: a spec naming a template is
    refused); ``check_callback`` applies the webhook sender's URL rules at submit (None: no
    check here, the send-time check still applies).
    """

    def __init__(
        self,
        *,
        projects: ProjectStore,
        builds: BuildStore,
        workers: WorkerStore,
        templates: TemplateProvider | None,
        check_callback: CallbackCheck | None,
        default_agent: str,
        max_attempts: int,
        offline_after_seconds: float,
    ) -> None:
        self.projects = projects
        self.builds = builds
        self.workers = workers
        self.templates = templates
        self.check_callback = check_callback
        self.default_agent = default_agent
        self.max_attempts = max_attempts
        self.offline_after = offline_after_seconds

    async def _project_for(self, principal: Principal, ref: str) -> ProjectRecord:
        record = await self.projects.get(ref)
        principal.require_project(record.id, record.name)
        return record

    async def prepare(self, project: ProjectDefaults, spec: BuildSpec) -> Prepared:
        """Resolve defaults, validate against config; (spec, agent, prompt, template, version).

        Create-and-build calls it for a project not made yet, so it must stay a check
        without side effects.
        """
        agent = spec.agent or project.default_agent or self.default_agent
        if agent not in KNOWN_AGENTS:
            raise ValidationFailed(
                f"unknown agent {agent!r}; known: {', '.join(KNOWN_AGENTS)}", field="agent"
            )
        spec = spec.model_copy(
            update={
                "agent": agent,
                "branch": spec.branch or project.default_branch,
                "labels": spec.labels or list(project.labels),
            }
        )
        prompt, template, version = spec.prompt, None, None
        if spec.template:
            if self.templates is None:
                raise ValidationFailed("templates are not available", field="template")
            try:
                self.templates.get(spec.template)
            except NotFound:
                raise ValidationFailed(
                    f"template {spec.template!r} not found", field="template"
                ) from None
            rendered = self.templates.render_prompt(
                spec.template,
                spec.prompt,
                spec.variables,
                {
                    "name": project.name,
                    "repo_url": project.repo_url,
                    "default_branch": project.default_branch,
                },
            )
            prompt, template, version = rendered.prompt, rendered.template, rendered.version
        elif spec.variables:
            raise ValidationFailed("variables need a template", field="variables")
        if spec.callback_url and self.check_callback:
            await self.check_callback(spec.callback_url)
        return spec, agent, prompt, template, version

    async def submit(
        self, principal: Principal, project_ref: str, spec: BuildSpec, idempotency_key: str | None
    ) -> tuple[Build, bool]:
        principal.require("builds:write")
        project = await self._project_for(principal, project_ref)
        if idempotency_key:
            # A retried POST returns the first build even if defaults changed since.
            existing = await self.builds.by_idempotency_key(project.id, idempotency_key)
            if existing:
                return existing, False
        spec, agent, prompt, template, version = await self.prepare(project, spec)
        return await self.builds.submit(
            project_id=project.id,
            spec=spec,
            agent=agent,
            labels=spec.labels,
            rendered_prompt=prompt,
            template_name=template,
            template_version=version,
            max_attempts=self.max_attempts,
            idempotency_key=idempotency_key,
            actor=principal.actor,
            project_name=project.name,
        )

    async def get(self, principal: Principal, task_id: str) -> Build:
        principal.require("builds:read", "builds:write")
        build = await self.builds.get(task_id)
        principal.require_project(build.project_id, build.project_name)
        if build.status == BuildStatus.PENDING:
            build.pending_reason = await self._why_pending(build)
        return build

    async def _why_pending(self, build: Build) -> str:
        """The first reason, most general first, that no worker takes the build now."""
        agent = build.spec.agent or self.default_agent
        online = [w for w in await self.workers.list(self.offline_after) if w.online]
        if not online:
            return "no worker is online"
        offering = [w for w in online if agent in w.agents]
        if not offering:
            return f"no online worker offers agent {agent}"
        need = set(build.spec.labels)
        if need and not any(need <= set(w.labels) for w in offering):
            return f"no online worker offering {agent} has labels {sorted(need)}"
        return "waiting for a free worker slot"

    async def list(
        self,
        principal: Principal,
        project_ref: str | None,
        statuses: builtins.list[str] | None,
        limit: int,
        cursor: int | None,
    ) -> tuple[builtins.list[Build], int | None]:
        principal.require("builds:read", "builds:write")
        project_id = None
        if project_ref:
            project_id = (await self._project_for(principal, project_ref)).id
        allowed = None
        if principal.projects is not None and project_id is None:
            allowed = [p.id for p in await self.projects.list(list(principal.projects))]
        return await self.builds.list(
            project_id=project_id,
            statuses=statuses,
            limit=limit,
            cursor=cursor,
            project_ids=allowed,
        )

    async def cancel(self, principal: Principal, task_id: str) -> Build:
        principal.require("builds:write")
        build = await self.builds.get(task_id)
        principal.require_project(build.project_id, build.project_name)
        return await self.builds.cancel(task_id, principal.actor)

    async def events(self, principal: Principal, task_id: str) -> builtins.list[BuildEvent]:
        await self.get(principal, task_id)
        return await self.builds.events(task_id)

    async def logs(self, principal: Principal, task_id: str, since: int) -> builtins.list[LogChunk]:
        await self.get(principal, task_id)
        return await self.builds.logs(task_id, since)
