"""Create-and-build: a new project with its repository scaffolded from a template, and its
first build, in one call (``POST /project/create-and-build``).

Steps, in order; the error of a failed step names it (problem field ``step``):

1. ``validate``: permissions, the project name (free, a slug), the repo host, the template
   and its variables (the scaffold is rendered into a temporary folder, so sandbox escapes
   and bad paths fail here), and the build exactly as a submit would check it (agent,
   template variables, callback URL). Nothing exists yet.
2. ``repository``: the repo host creates the repository with the scaffold as its first
   commit (skipped for host ``none``: an existing repository is registered).
3. ``project``: the project row.
4. ``build``: the build is queued.

When a later step fails, what the earlier steps made is undone (project row removed,
repository deleted); the error lists it in ``undone``, and anything that could not be
undone in ``left_behind``: never a half-made project the API does not report.
With an Idempotency-Key the first answer is stored (scope: the calling token) and a retry
gets it back; the same key with another body is a 422, while the first is running a 409.

The service takes a :class:`ProjectAndBuild` (domain values); the HTTP request model that
becomes one is ``rdev.api.schemas.CreateAndBuildRequest``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from rdev.domain.auth import Principal
from rdev.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    UpstreamFailed,
    ValidationFailed,
)
from rdev.domain.models import Build, BuildSpec, BuildStatus, Project
from rdev.ports.git import GitError
from rdev.ports.idempotency import IdempotencyStore, StoredAnswer
from rdev.ports.projects import ProjectDefaults
from rdev.ports.repohost import RepoHost
from rdev.ports.templates import TemplateProvider
from rdev.services.projects import ProjectRegistration, ProjectService, validate_slug

log = structlog.get_logger(__name__)

HOSTS = ("local", "gitea", "none")
GITEA_OPTIONS = ("owner", "private", "description", "template_repo")
_BRANCH = re.compile(r"^(?!-)(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,255}(?<!/)(?<!\.lock)$")

#: One made step's undo: what it undoes ("project removed") and the coroutine that does it.
Undo = tuple[str, Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class ProjectToCreate:
    """The project half of a create-and-build: the repository to make and how to register it.

    ``host`` None means the server's default repo host; ``repo_url`` and ``git_credential``
    only go with host ``none`` (an existing repository); ``gitea_options`` (``owner``,
    ``private``, ``description``, ``template_repo``) only with host ``gitea``.
    """

    name: str
    template: str = "blank"
    variables: Mapping[str, Any] = field(default_factory=dict)
    host: str | None = None
    repo_url: str | None = None
    git_credential: SecretStr | None = None
    default_branch: str = "main"
    default_agent: str | None = None
    labels: tuple[str, ...] = ()
    gitea_options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectAndBuild:
    """A create-and-build request in domain terms; ``fingerprint`` identifies the request
    for its Idempotency-Key (a retry with the same key must have the same fingerprint)."""

    project: ProjectToCreate
    build: BuildSpec
    fingerprint: str


@dataclass(frozen=True)
class _Draft:
    """The project as a build sees it before it exists (for :meth:`BuildSteps.prepare`)."""

    name: str
    repo_url: str
    default_branch: str
    default_agent: str | None
    labels: Sequence[str]


@dataclass
class CreatedAndBuilt:
    """The answer: the new project and its first build; ``replayed`` when it is the stored
    answer of an earlier request with the same Idempotency-Key."""

    project: Project
    task_id: str
    status: BuildStatus
    created_at: datetime
    replayed: bool = False


class BuildSteps(Protocol):
    """What create-and-build asks of the build service (BuildService is one)."""

    async def prepare(
        self, project: ProjectDefaults, spec: BuildSpec
    ) -> tuple[BuildSpec, str, str, str | None, str | None]:
        """Check ``spec`` for ``project`` exactly as a submit would (raises on bad input)."""
        ...

    async def submit(
        self, principal: Principal, project_ref: str, spec: BuildSpec, idempotency_key: str | None
    ) -> tuple[Build, bool]: ...


class CreateAndBuildService:
    """The four steps over ports only: the ProjectService registers (and, as an undo,
    deletes) the project, ``builds`` checks and queues the build, ``templates`` renders the
    scaffold, ``repo_hosts`` (host name -> RepoHost) makes the repository, ``idempotency``
    keeps Idempotency-Key answers (None: keys are ignored). ``default_host`` is used when a
    request names none."""

    def __init__(
        self,
        *,
        projects: ProjectService,
        builds: BuildSteps,
        templates: TemplateProvider,
        repo_hosts: Mapping[str, RepoHost],
        idempotency: IdempotencyStore | None,
        default_host: str = "local",
    ) -> None:
        self.projects = projects
        self.builds = builds
        self.templates = templates
        self.repo_hosts = repo_hosts
        self.idempotency = idempotency
        self.default_host = default_host

    # -- entry point ---------------------------------------------------------------------------

    async def run(
        self, principal: Principal, request: ProjectAndBuild, idempotency_key: str | None
    ) -> CreatedAndBuilt:
        principal.require("projects:write")
        principal.require("builds:write")
        if not idempotency_key or self.idempotency is None:
            return await self._run(principal, request)

        scope = f"create-and-build:{principal.token_id}"
        fingerprint = request.fingerprint
        stored = await self.idempotency.reserve(idempotency_key, scope, fingerprint)
        if stored is not None:
            return _replay(stored, fingerprint)
        try:
            outcome = await self._run(principal, request)
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.idempotency.release(idempotency_key, scope))
            raise
        try:
            await self.idempotency.complete(idempotency_key, scope, fingerprint, _answer(outcome))
        except Exception:
            log.exception("could not store the idempotent answer", key=idempotency_key)
        return outcome

    async def _run(self, principal: Principal, request: ProjectAndBuild) -> CreatedAndBuilt:
        made: list[Undo] = []
        step = "validate"
        try:
            with tempfile.TemporaryDirectory(prefix="rdev-scaffold-") as tmp:
                plan = await self._validate(principal, request, Path(tmp) / "scaffold")

                step = "repository"
                repo_url, credential, web_url = await self._make_repository(plan, made)

                step = "project"
                created = await self.projects.create(
                    principal,
                    ProjectRegistration(
                        name=plan.name,
                        repo_url=repo_url,
                        default_branch=plan.branch,
                        git_credential=credential,
                        default_agent=request.project.default_agent,
                        labels=request.project.labels,
                        repo_host=None if plan.host == "none" else plan.host,
                        settings={"repository": plan.settings(web_url)},
                    ),
                )
                project = created.project

                async def remove_project() -> None:
                    await self.projects.delete(principal, project.id, delete_repository=False)

                made.append(("project removed", remove_project))

                step = "build"
                build, _ = await self.builds.submit(principal, project.id, plan.spec, None)
        except BaseException as exc:
            undone, left = await asyncio.shield(_undo(made))
            if isinstance(exc, Exception):
                raise _step_error(step, exc, undone, left) from None
            raise
        log.info("project created and build queued", project=plan.name, task_id=build.task_id)
        return CreatedAndBuilt(
            project=project, task_id=build.task_id, status=build.status, created_at=build.created_at
        )

    # -- steps ---------------------------------------------------------------------------------

    async def _validate(
        self, principal: Principal, request: ProjectAndBuild, scaffold_dir: Path
    ) -> _Plan:
        p = request.project
        _prefixed("project.", validate_slug, p.name)
        if principal.projects is not None and p.name not in principal.projects:
            principal.require_project("", p.name)
        if not _BRANCH.match(p.default_branch):
            raise ValidationFailed(
                f"default_branch {p.default_branch!r} is not a valid branch name",
                field="project.default_branch",
            )
        host_name = p.host or self.default_host
        host = self._host(host_name, p)
        if await self.projects.exists(p.name):
            raise Conflict(f"a project named {p.name!r} already exists", field="project.name")

        try:
            template = self.templates.get(p.template)
        except NotFound as exc:
            raise ValidationFailed(exc.detail, field="project.template") from None
        # The repository URL as far as it is known before the repository exists.
        predicted_url = p.repo_url or (host.clone_url(p.name) if host is not None else None)
        context = {
            "name": p.name,
            "repo_url": predicted_url or "",
            "default_branch": p.default_branch,
        }

        try:
            await asyncio.to_thread(
                self.templates.scaffold, template.name, scaffold_dir, dict(p.variables), context
            )
        except DomainError as exc:
            exc.field = exc.field or "template"  # scaffold render errors name no field
            raise _with_field_prefix(exc, "project.") from None
        spec = request.build
        if spec.template is None:
            # The build uses the project's template (and its variables) unless it names one.
            spec = spec.model_copy(
                update={"template": template.name, "variables": {**p.variables, **spec.variables}}
            )
        draft = _Draft(
            name=p.name,
            repo_url=context["repo_url"],
            default_branch=p.default_branch,
            default_agent=p.default_agent,
            labels=p.labels,
        )
        try:
            await self.builds.prepare(draft, spec)
        except NotFound as exc:
            raise ValidationFailed(exc.detail, field=f"build.{exc.field or 'template'}") from None
        except DomainError as exc:
            raise _with_field_prefix(exc, "build.") from None

        return _Plan(
            name=p.name,
            branch=p.default_branch,
            host=host_name,
            repo_host=host,
            options=dict(p.gitea_options),
            scaffold=scaffold_dir,
            spec=spec,
            repo_url=p.repo_url,
            credential=p.git_credential,
            template=(template.name, template.version),
        )

    def _host(self, host_name: str, p: ProjectToCreate) -> RepoHost | None:
        if host_name not in HOSTS:
            raise ValidationFailed(f"unknown repo host {host_name!r}", field="project.host")
        given_gitea = [k for k in GITEA_OPTIONS if p.gitea_options.get(k) is not None]
        if host_name != "gitea" and given_gitea:
            raise ValidationFailed(
                f"{given_gitea[0]} is a Gitea option; host is {host_name!r}",
                field=f"project.{given_gitea[0]}",
            )
        if host_name == "none":
            if not p.repo_url:
                raise ValidationFailed("host 'none' needs repo_url", field="project.repo_url")
            return None
        for key, value in (("repo_url", p.repo_url), ("git_credential", p.git_credential)):
            if value is not None:
                raise ValidationFailed(
                    f"{key} is only for host 'none'; host {host_name!r} makes the repository",
                    field=f"project.{key}",
                )
        host = self.repo_hosts.get(host_name)
        if host is None:
            raise ValidationFailed(
                f"repo host {host_name!r} is not configured on this server", field="project.host"
            )
        return host

    async def _make_repository(
        self, plan: _Plan, made: list[Undo]
    ) -> tuple[str, SecretStr | None, str | None]:
        host = plan.repo_host
        if host is None:
            assert plan.repo_url
            return plan.repo_url, plan.credential, None
        created = await host.create(plan.name, plan.branch, plan.options, plan.scaffold)
        if plan.host == "gitea" and "owner" not in plan.options:
            # Made for the token's own user: its name (needed to delete it) is in the URL.
            owner = _owner_from_url(created.clone_url)
            if owner:
                plan.options["owner"] = owner

        async def delete_repository() -> None:
            await host.delete(plan.name, plan.options)

        made.append(("repository deleted", delete_repository))
        return created.clone_url, created.credential, created.web_url


@dataclass
class _Plan:
    name: str
    branch: str
    host: str
    repo_host: RepoHost | None
    options: dict[str, Any]
    scaffold: Path
    spec: BuildSpec
    repo_url: str | None
    credential: SecretStr | None
    template: tuple[str, str]

    def settings(self, web_url: str | None) -> dict[str, Any]:
        return {
            "host": self.host,
            "name": self.name,
            "options": self.options,
            "web_url": web_url,
            "template": {"name": self.template[0], "version": self.template[1]},
        }


def _owner_from_url(url: str) -> str | None:
    parts = urlsplit(url).path.strip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def _prefixed(prefix: str, fn: Callable[[str], object], arg: str) -> None:
    try:
        fn(arg)
    except DomainError as exc:
        raise _with_field_prefix(exc, prefix) from None


def _with_field_prefix(exc: DomainError, prefix: str) -> DomainError:
    # Changed in place: DomainError subclasses may have their own constructors.
    if exc.field and not exc.field.startswith(prefix):
        exc.field = f"{prefix}{exc.field}"
    return exc


async def _undo(made: list[Undo]) -> tuple[list[str], list[str]]:
    """Undo in reverse order; (what was undone, what could not be)."""
    undone: list[str] = []
    left: list[str] = []
    for what, undo in reversed(made):
        try:
            await undo()
            undone.append(what)
        except Exception:
            log.exception("create-and-build rollback step failed", what=what)
            left.append(what.replace(" removed", "").replace(" deleted", ""))
    return undone, left


def _step_error(step: str, exc: Exception, undone: list[str], left: list[str]) -> DomainError:
    """The error of a failed step: the same DomainError (changed in place: subclasses may have
    their own constructors) with the step, and what was undone, in its detail and fields."""
    if isinstance(exc, DomainError):
        error = exc
        if step == "repository" and error.field and not error.field.startswith("project."):
            error.field = f"project.{error.field}"
    elif isinstance(exc, GitError):
        error = UpstreamFailed(f"git failed: {exc}")
    else:
        log.error("create-and-build failed unexpectedly", step=step, exc_info=exc)
        error = UpstreamFailed(f"unexpected {type(exc).__name__} (logged on the server)")
    message = f"create-and-build failed at step '{step}': {error.detail}"
    if undone:
        message += f" (undone: {', '.join(undone)})"
    if left:
        message += f" (could NOT undo: {', '.join(left)}; remove by hand)"
    error.detail = message
    error.args = (message,)
    error.extra = {**error.extra, "step": step, "undone": undone}
    if left:
        error.extra["left_behind"] = left
    return error


def _answer(outcome: CreatedAndBuilt) -> dict[str, Any]:
    """The answer stored under an Idempotency-Key (JSON)."""
    return {
        "project": outcome.project.model_dump(mode="json"),
        "task_id": outcome.task_id,
        "status": outcome.status.value,
        "created_at": outcome.created_at.isoformat(),
    }


def _replay(stored: StoredAnswer, fingerprint: str) -> CreatedAndBuilt:
    if stored.fingerprint != fingerprint:
        raise ValidationFailed(
            "this Idempotency-Key was used with a different request body",
            field="Idempotency-Key",
        )
    if stored.state != "done":
        raise Conflict(
            "a request with this Idempotency-Key is still being processed; retry later",
            field="Idempotency-Key",
        )
    answer = stored.answer
    return CreatedAndBuilt(
        project=Project.model_validate(answer["project"]),
        task_id=answer["task_id"],
        status=BuildStatus(answer["status"]),
        created_at=datetime.fromisoformat(answer["created_at"]),
        replayed=True,
    )
