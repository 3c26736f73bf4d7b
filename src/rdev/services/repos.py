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
  It is the worker service's ``ClaimCredentials`` (``rdev.ports.credentials``): claims of
  local-host builds get that credential right after the queue's claim.
- :func:`local_repository_remover` subscribes to ``ProjectDeleted`` for
  ``DELETE /projects/{id}?delete_repository=true``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import NotFound, Unauthorized
from rdev.domain.events import ProjectDeleted
from rdev.domain.models import ClaimedTask
from rdev.ports.leases import LeaseReader
from rdev.ports.projects import ProjectStore
from rdev.ports.repohost import RepoHost

log = structlog.get_logger(__name__)

TASK_CREDENTIAL_PREFIX = "rdevgit_"  # noqa: S105 - a prefix, not a secret
LOCAL_HOST = "local"

READ_SCOPES = ("builds:read", "projects:read", "workers:run")
WRITE_SCOPES = ("workers:run", "projects:write")


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

    async def add_credentials(self, tasks: Sequence[ClaimedTask]) -> list[ClaimedTask]:
        """ClaimCredentials: a claimed local-host build without a stored credential gets a
        task credential (the server stores none for its own repositories)."""
        return [
            task.model_copy(update={"git_credential": self.mint(task.task_id, task.lease_token)})
            if task.git_credential is None and task.project.repo_host == LOCAL_HOST
            else task
            for task in tasks
        ]

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
        if not hmac.compare_digest(mac, self._mac(task_id, lease.lease_token)):
            return None
        return lease.project_name


class GitAccess:
    """``authorize(token, repo_name, is_write)`` for GitSmartHTTPApp: True, False (403), None (401).

    ``projects`` is the project store (a token limited to projects is checked against the
    repository's project); ``tokens`` authenticates API tokens.
    """

    def __init__(
        self, tokens: Authenticator, projects: ProjectStore, credentials: TaskGitCredentials
    ) -> None:
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
            project_id = (await self.projects.get(repo_name)).id
        except NotFound:
            project_id = ""  # a kept repository of a deleted project: only by name
        return principal.may_see_project(project_id, repo_name)


class Authenticator(Protocol):
    """Who an API token is (the TokenService): raises Unauthorized for a bad token."""

    async def authenticate(self, token: str | None) -> Principal: ...


def local_repository_remover(host: RepoHost) -> Callable[[ProjectDeleted], Awaitable[None]]:
    """A ``ProjectDeleted`` subscriber: with ``delete_repository`` remove the local repository.

    Only a project whose repository is this server's own (made by create-and-build on the
    local host, or its repo URL is the local host's clone URL for its name) is touched; by
    default repositories are kept.
    """

    async def on_project_deleted(event: ProjectDeleted) -> None:
        project = event.project
        if not event.delete_repository:
            return
        made_here = (project.settings.get("repository") or {}).get("host") == LOCAL_HOST
        if not made_here and project.repo_url != host.clone_url(project.name):
            return
        await host.delete(project.name, {})
        log.info("local repository deleted", project=project.name)

    return on_project_deleted
