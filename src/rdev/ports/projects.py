"""The project store port, and the record it returns.

The API's :class:`~rdev.domain.models.Project` is what a client may see; a
:class:`ProjectRecord` is what the services need: the same fields plus the secret-bearing
ones (the git credential a worker clones with, the CI token, the webhook signing secret)
and the repo host. Secrets are :class:`~pydantic.SecretStr`, so a record that ends up in a
log line or a ``repr`` shows ``**********``; code reveals one only where it is used.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypedDict

from pydantic import SecretStr

from rdev.domain.models import Project


def reveal(secret: SecretStr | None) -> str | None:
    """The secret's value, None when unset: the one way a secret leaves its wrapper."""
    return secret.get_secret_value() if secret is not None else None


@dataclass(frozen=True)
class ProjectRecord:
    """A stored project with everything the services use (secrets wrapped)."""

    id: str
    name: str
    repo_url: str
    default_branch: str
    created_at: datetime
    default_agent: str | None = None
    labels: tuple[str, ...] = ()
    #: The project's JSON settings (``ci``, ``repository``): free-form by design.
    settings: Mapping[str, Any] = field(default_factory=dict)
    git_credential: SecretStr | None = None
    ci_token: SecretStr | None = None
    webhook_secret: SecretStr | None = None
    #: The repo host that made the repository (``local``, ``gitea``); None: registered.
    repo_host: str | None = None

    @property
    def has_git_credential(self) -> bool:
        return bool(self.git_credential and self.git_credential.get_secret_value())

    def as_project(self) -> Project:
        """The public view (no secrets), as the API shows it."""
        return Project(
            id=self.id,
            name=self.name,
            repo_url=self.repo_url,
            default_branch=self.default_branch,
            has_git_credential=self.has_git_credential,
            default_agent=self.default_agent,
            labels=list(self.labels),
            settings=dict(self.settings),
            created_at=self.created_at,
        )


class ProjectDefaults(Protocol):
    """What a build takes from its project (a stored record, or one about to be made)."""

    @property
    def name(self) -> str: ...
    @property
    def repo_url(self) -> str: ...
    @property
    def default_branch(self) -> str: ...
    @property
    def default_agent(self) -> str | None: ...
    @property
    def labels(self) -> Sequence[str]: ...


class ProjectChanges(TypedDict, total=False):
    """The columns a PATCH may change; a key absent is left as it is, None clears."""

    default_branch: str
    labels: list[str]
    default_agent: str | None
    git_credential: SecretStr | None
    settings: dict[str, Any]
    ci_token: SecretStr | None
    webhook_secret: SecretStr | None


class ProjectStore(Protocol):
    """Projects by id or name. Names are unique; a second one is a Conflict (field ``name``)."""

    async def create(
        self,
        *,
        name: str,
        repo_url: str,
        default_branch: str,
        git_credential: SecretStr | None,
        default_agent: str | None = None,
        labels: Sequence[str] = (),
        settings: Mapping[str, Any] | None = None,
        webhook_secret: SecretStr | None = None,
        ci_token: SecretStr | None = None,
        repo_host: str | None = None,
    ) -> ProjectRecord: ...

    async def get(self, ref: str) -> ProjectRecord:
        """The project whose id or name is ``ref``; NotFound otherwise."""
        ...

    async def list(self, only: builtins.list[str] | None = None) -> builtins.list[ProjectRecord]:
        """All projects by name; ``only``: just those whose id or name is listed."""
        ...

    async def update(self, project_id: str, changes: ProjectChanges) -> ProjectRecord: ...

    async def delete(self, project_id: str) -> None:
        """Delete the project (its builds and aliases go with it). A project with a running
        build is a Conflict; deleting one that is gone is not an error."""
        ...
