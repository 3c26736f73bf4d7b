"""Projects: registration, lookup, change, deletion.

Everything ProjectService consults is given to its constructor: the store, the event bus it
announces deletions on, the hostname rules (a new project's canonical hostname must be free;
a deleted project's aliases are read before they go with its row), the CI settings check
and the webhook secret maker. ``bootstrap.py`` wires them; what happens after a project is
deleted is whoever subscribes to :class:`~rdev.domain.events.ProjectDeleted` there.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import SecretStr

from rdev.domain.auth import Principal
from rdev.domain.errors import NotFound, ValidationFailed
from rdev.domain.events import ProjectDeleted
from rdev.domain.hostnames import AliasRecord
from rdev.domain.models import KNOWN_AGENTS, Project
from rdev.ports.projects import ProjectChanges, ProjectRecord, ProjectStore
from rdev.services.events import EventBus

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_slug(name: str) -> str:
    if not SLUG.match(name):
        raise ValidationFailed(
            "name must be a slug: lowercase letters, digits and inner hyphens, 1-63 chars",
            field="name",
        )
    return name


class HostnameRules(Protocol):
    """The hostname feature's part in a project's life (the HostnameService is one)."""

    async def refuse_taken_hostname(self, project_name: str) -> None:
        """Raise Conflict (field ``name``) when the name's canonical hostname is taken."""
        ...

    async def aliases_of(self, project_id: str) -> tuple[AliasRecord, ...]:
        """The project's aliases: read before the delete, since they go with its row."""
        ...


class PrepareCI(Protocol):
    """Validates a PATCH ``ci`` object against the project's current CI settings and token:
    (``settings["ci"]`` or None, the CI token or None). Raises ValidationFailed."""

    def __call__(
        self, project: ProjectRecord, patch: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]: ...


@dataclass(frozen=True)
class ProjectRegistration:
    """A project to register (``POST /projects``, or create-and-build's ``project`` step)."""

    name: str
    repo_url: str
    default_branch: str = "main"
    git_credential: SecretStr | None = None
    default_agent: str | None = None
    labels: Sequence[str] = ()
    settings: Mapping[str, Any] | None = None
    repo_host: str | None = None


@dataclass(frozen=True)
class Created:
    """A new project, and its webhook signing secret (shown this once; None: no secrets)."""

    project: Project
    webhook_secret: str | None


class ProjectService:
    def __init__(
        self,
        store: ProjectStore,
        events: EventBus,
        *,
        hostnames: HostnameRules | None = None,
        prepare_ci: PrepareCI | None = None,
        new_webhook_secret: Callable[[], str] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.hostnames = hostnames
        self.prepare_ci = prepare_ci
        #: Makes a project's webhook signing secret (``whsec_...``); None: no callbacks.
        self.new_webhook_secret = new_webhook_secret

    async def create(self, principal: Principal, new: ProjectRegistration) -> Created:
        principal.require("projects:write")
        validate_slug(new.name)
        if principal.projects is not None and new.name not in principal.projects:
            principal.require_project("", new.name)
        if self.hostnames is not None:
            await self.hostnames.refuse_taken_hostname(new.name)
        secret = self.new_webhook_secret() if self.new_webhook_secret is not None else None
        record = await self.store.create(
            name=new.name,
            repo_url=new.repo_url,
            default_branch=new.default_branch,
            git_credential=new.git_credential,
            default_agent=new.default_agent,
            labels=new.labels,
            settings=new.settings,
            webhook_secret=SecretStr(secret) if secret else None,
            repo_host=new.repo_host,
        )
        return Created(record.as_project(), secret)

    async def require_access(self, principal: Principal, ref: str) -> None:
        """Forbidden unless the principal's token may touch the project (its scopes are
        the caller's business: a route checks them before reading the body)."""
        if principal.projects is None:
            return
        record = await self.store.get(ref)
        principal.require_project(record.id, record.name)

    async def get_record(self, principal: Principal, ref: str) -> ProjectRecord:
        """The stored project (secrets wrapped) for a principal that may read it."""
        principal.require("projects:read", "builds:read", "builds:write")
        record = await self.store.get(ref)
        principal.require_project(record.id, record.name)
        return record

    async def exists(self, ref: str) -> bool:
        """Whether a project with this id or name exists, whoever may see it (a name is
        unique across the server, so a taken one is taken for everybody)."""
        try:
            await self.store.get(ref)
        except NotFound:
            return False
        return True

    async def get(self, principal: Principal, ref: str) -> Project:
        return (await self.get_record(principal, ref)).as_project()

    async def list(self, principal: Principal) -> builtins.list[Project]:
        principal.require("projects:read")
        only = builtins.list(principal.projects) if principal.projects is not None else None
        return [r.as_project() for r in await self.store.list(only)]

    async def patch(
        self, principal: Principal, ref: str, changes: Mapping[str, Any]
    ) -> tuple[Project, str | None]:
        """PATCH /projects/{id}: only the keys in ``changes`` change. Returns the project and,
        when ``rotate_webhook_secret`` was asked, the new secret (the only time it is shown)."""
        principal.require("projects:write")
        record = await self.store.get(ref)  # projects:write suffices, no read scope needed
        principal.require_project(record.id, record.name)
        values: ProjectChanges = {}
        for key in ("default_branch", "labels"):
            if key in changes and changes[key] is None:
                raise ValidationFailed(f"{key} cannot be null", field=key)
        if "default_branch" in changes:
            values["default_branch"] = changes["default_branch"]
        if "labels" in changes:
            values["labels"] = builtins.list(changes["labels"])
        agent = changes.get("default_agent")
        if agent is not None and agent not in KNOWN_AGENTS:
            raise ValidationFailed(
                f"unknown agent {agent!r}; known: {', '.join(KNOWN_AGENTS)}", field="default_agent"
            )
        if "default_agent" in changes:
            values["default_agent"] = changes["default_agent"] or None
        if "git_credential" in changes:
            values["git_credential"] = _secret(changes["git_credential"])
        if changes.get("ci") is not None:
            if self.prepare_ci is None:
                raise ValidationFailed("CI is not available on this server", field="ci")
            ci, token = self.prepare_ci(record, changes["ci"])
            settings = {k: v for k, v in record.settings.items() if k != "ci"}
            values["settings"] = {**settings, "ci": ci} if ci else settings
            values["ci_token"] = _secret(token)
        secret = None
        if changes.get("rotate_webhook_secret"):
            if self.new_webhook_secret is None:
                raise ValidationFailed(
                    "webhook secrets are not available on this server",
                    field="rotate_webhook_secret",
                )
            secret = self.new_webhook_secret()
            values["webhook_secret"] = SecretStr(secret)
        if values:
            record = await self.store.update(record.id, values)
        return record.as_project(), secret

    async def delete(self, principal: Principal, ref: str, *, delete_repository: bool) -> None:
        """Delete the project, then publish ProjectDeleted (with the aliases that went with
        it): followers clean up what lives outside the database."""
        principal.require("projects:write")
        record = await self.get_record(principal, ref)
        aliases = await self.hostnames.aliases_of(record.id) if self.hostnames else ()
        await self.store.delete(record.id)
        await self.events.publish(
            ProjectDeleted(
                project=record.as_project(), delete_repository=delete_repository, aliases=aliases
            )
        )


def _secret(value: str | None) -> SecretStr | None:
    """A write-only value from a request: empty clears it."""
    return SecretStr(value) if value else None
