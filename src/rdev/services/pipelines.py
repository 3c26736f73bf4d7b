"""CI pipelines of a project: the read-only proxy behind ``GET /projects/{id}/pipelines``.

:meth:`PipelineService.list_pipelines` / :meth:`get_pipeline` ask the project's CI provider,
built from the project's CI settings by the injected factory (so this module never knows which
CI server it talks to). A project without CI is a 409 ``ci-not-configured`` with a hint.

The other two CI concerns live apart: validating a project's CI settings in
``ci_settings.py``, following pushed builds in CI in ``ci_linker.py``.
"""

from __future__ import annotations

from rdev.domain.auth import Principal
from rdev.domain.errors import Conflict
from rdev.ports.ci import CIProvider, CIProviderFactory, Pipeline, ProjectCI
from rdev.services.projects import ProjectService


class CINotConfigured(Conflict):
    code = "ci-not-configured"


class PipelineService:
    def __init__(
        self,
        projects: ProjectService,
        provider_factory: CIProviderFactory,
        *,
        http_timeout: float = 10.0,
    ) -> None:
        #: Principal-checked project lookups (the caller must see the project).
        self.projects = projects
        self.provider_factory = provider_factory
        self.http_timeout = http_timeout

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
        project = await self.projects.get_record(principal, ref)
        ci = ProjectCI.of(project.settings, project.ci_token)
        if ci is None:
            raise CINotConfigured(
                f"project {project.name!r} has no CI configured; configure CI with "
                "PATCH /projects/{id} {ci: ...}",
                extra={
                    "hint": 'PATCH /projects/{id} {"ci": {"provider": "woodpecker", '
                    '"server_url": "...", "repo": "owner/name", "token": "..."}}'
                },
            )
        return self.provider_factory(ci.provider_settings(), self.http_timeout)
