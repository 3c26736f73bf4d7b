"""Who may use the server's own git repositories (the ``local`` repo host), and how workers do.

Three pieces, wired in bootstrap.py:

- :class:`GitAccess` is the ``authorize(token, repo, is_write)`` callback of the git
  smart-HTTP app mounted at ``/git``. It accepts an API token (Basic password or Bearer):
  reading needs ``builds:read``, ``projects:read`` or ``workers:run``; pushing needs
  ``workers:run`` or ``projects:write``; a token limited to other projects is refused (403).
  It also accepts a *task git credential* (below) for the one project of its task.
- :class:`TaskGitCredentials` mints and checks task git credentials. The server stores no
  credential for a local-host project; instead a worker's claim of a build of such a project
  carries ``git_credential = "rdevgit_<task id>.<mac>"``, where the mac is an HMAC of the task
  id keyed with the task's lease token. It is valid while that lease is (heartbeats extend
  it; a reaped or completed task's credential is dead), for that project only, read and
  write; knowing it does not reveal the lease token, so it cannot complete the task.
- :class:`LocalCredentialQueue` wraps the work queue so claims of local-host builds get
  that credential, and :func:`local_repository_remover` is the project ``on_delete`` hook for
  ``DELETE /projects/{id}?delete_repository=true``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, Protocol

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import NotFound, Unauthorized
from rdev.domain.models import ClaimedTask, Project

log = structlog.get_logger(__name__)

TASK_CREDENTIAL_PREFIX = "rdevgit_"  # noqa: S105 - a prefix, not a secret
LOCAL_HOST = "local"

READ_SCOPES = ("builds:read", "projects:read", "workers:run")
WRITE_SCOPES = ("workers:run", "projects:write")


class LeaseReader(Protocol):
    async def live_lease(self, task_id: str) -> tuple[str, str] | None:
        """(lease token, project name) while the task is leased (until it is reaped)."""
        ...


class TaskGitCredentials:
    """Mint and check per-task git credentials derived from the task's lease token."""

    def __init__(self, leases: LeaseReader) -> None:
        self.leases = leases

    @staticmethod
    def _mac(task_id: str, lease_token: str) -> str:
        digest = hmac.new(
            lease_token.encode(), b"rdev-git-credential:" + task_id.encode(), hashlib.sha256
        ).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def mint(self, task_id: str, lease_token: str) -> str:
        return f"{TASK_CREDENTIAL_PREFIX}{task_id}.{self._mac(task_id, lease_token)}"

    async def project_of(self, credential: str) -> str | None:
        """The project name a live task credential is for; None when unknown or its lease ended."""
        if not credential.startswith(TASK_CREDENTIAL_PREFIX):
            return None
        task_id, dot, mac = credential[len(TASK_CREDENTIAL_PREFIX) :].partition(".")
        if not dot or not task_id or len(task_id) > 64:
            return None
        lease = await self.leases.live_lease(task_id)
        if lease is None:
            return None
        lease_token, project_name = lease
        if not hmac.compare_digest(mac, self._mac(task_id, lease_token)):
            return None
        return project_name


class GitAccess:
    """``authorize(token, repo_name, is_write)`` for GitSmartHTTPApp: True, False (403), None (401).

    ``projects`` is the project store (``get_row(ref)``); ``tokens`` the TokenService.
    """

    def __init__(self, tokens: Any, projects: Any, credentials: TaskGitCredentials) -> None:
        self.tokens = tokens
        self.projects = projects
        self.credentials = credentials

    async def __call__(self, token: str | None, repo_name: str, is_write: bool) -> bool | None:
        if not token:
            return None
        if token.startswith(TASK_CREDENTIAL_PREFIX):
            project = await self.credentials.project_of(token)
            if project is None:
                return None
            return project == repo_name
        try:
            principal = await self.tokens.authenticate(token)
        except Unauthorized:
            return None
        return await self._allowed(principal, repo_name, is_write)

    async def _allowed(self, principal: Principal, repo_name: str, is_write: bool) -> bool:
        needed = WRITE_SCOPES if is_write else READ_SCOPES
        if not any(principal.has(s) for s in needed):
            return False
        if principal.projects is None:
            return True
        try:
            project_id = (await self.projects.get_row(repo_name))["id"]
        except NotFound:
            project_id = ""  # a kept repository of a deleted project: only by name
        return principal.may_see_project(project_id, repo_name)


class LocalCredentialQueue:
    """The work queue, with task git credentials added to claims of local-host builds.

    Everything but ``claim`` is passed through to the wrapped queue.
    """

    def __init__(self, inner: Any, projects: Any, credentials: TaskGitCredentials) -> None:
        self.inner = inner
        self.projects = projects
        self.credentials = credentials

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, **kwargs: Any) -> list[ClaimedTask]:
        tasks: list[ClaimedTask] = await self.inner.claim(**kwargs)
        for task in tasks:
            if task.git_credential is None and await self._is_local(task):
                task.git_credential = self.credentials.mint(task.task_id, task.lease_token)
        return tasks

    async def _is_local(self, task: ClaimedTask) -> bool:
        if "repo_host" in task.project:  # the claim carries it: no extra query
            return bool(task.project["repo_host"] == LOCAL_HOST)
        try:
            row = await self.projects.get_row(task.project["id"])
        except NotFound:
            return False
        return row.get("repo_host") == LOCAL_HOST


def local_repository_remover(host: Any) -> Any:
    """Project ``on_delete`` hook: with ``delete_repository=True`` remove the local repository.

    Only a project whose repository is this server's own (made by create-and-build on the
    local host, or its repo URL is the local host's clone URL for its name) is touched; by
    default repositories are kept.
    """

    async def hook(project: Project, options: dict[str, Any]) -> None:
        if not options.get("delete_repository"):
            return
        made_here = (project.settings.get("repository") or {}).get("host") == LOCAL_HOST
        if not made_here and project.repo_url != host.clone_url(project.name):
            return
        await host.delete(project.name, {})
        log.info("local repository deleted", project=project.name)

    return hook
