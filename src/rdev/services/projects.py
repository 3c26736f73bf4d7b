"""Projects: registration, lookup, deletion."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rdev.domain.auth import Principal
from rdev.domain.errors import ValidationFailed
from rdev.domain.models import KNOWN_AGENTS, Project

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


def validate_slug(name: str) -> str:
    if not SLUG.match(name):
        raise ValidationFailed(
            "name must be a slug: lowercase letters, digits and inner hyphens, 1-63 chars",
            field="name",
        )
    return name


class ProjectService:
    def __init__(self, store: Any, on_delete: list[Any] | None = None) -> None:
        self.store = store
        #: Callbacks run after a project is deleted (remove DNS aliases, local repos, ...).
        self.on_delete = on_delete or []
        #: Checks run with the new project's name before it is created (may raise).
        self.before_create: list[Any] = []
        #: Makes a project's webhook signing secret (``whsec_...``); set by bootstrap.
        self.new_webhook_secret: Callable[[], str] | None = None
        #: Validates a PATCH ``ci`` object → (settings["ci"] or None, ci_token); set by bootstrap.
        self.prepare_ci: Callable[[dict[str, Any], dict[str, Any]], tuple[Any, Any]] | None = None

    async def create(self, principal: Principal, **fields: Any) -> Project:
        principal.require("projects:write")
        validate_slug(fields["name"])
        if principal.projects is not None and fields["name"] not in principal.projects:
            principal.require_project("", fields["name"])
        for check in self.before_create:
            await check(fields["name"])
        if self.new_webhook_secret is not None and not fields.get("webhook_secret"):
            fields["webhook_secret"] = self.new_webhook_secret()
        return await self.store.create(**fields)

    async def get(self, principal: Principal, ref: str) -> Project:
        principal.require("projects:read", "builds:read", "builds:write")
        project = await self.store.get(ref)
        principal.require_project(project.id, project.name)
        return project

    async def get_row(self, principal: Principal, ref: str) -> dict[str, Any]:
        project = await self.get(principal, ref)
        return await self.store.get_row(project.id)

    async def list(self, principal: Principal) -> list[Project]:
        principal.require("projects:read")
        only = list(principal.projects) if principal.projects is not None else None
        return await self.store.list(only)

    async def update(self, principal: Principal, ref: str, **values: Any) -> Project:
        principal.require("projects:write")
        project = await self.get(principal, ref)
        return await self.store.update(project.id, **values)

    async def patch(
        self, principal: Principal, ref: str, changes: dict[str, Any]
    ) -> tuple[Project, str | None]:
        """PATCH /projects/{id}: only the keys in ``changes`` change. Returns the project and,
        when ``rotate_webhook_secret`` was asked, the new secret (the only time it is shown)."""
        principal.require("projects:write")
        project = await self.store.get(ref)  # projects:write suffices, no read scope needed
        principal.require_project(project.id, project.name)
        values: dict[str, Any] = {}
        for key in ("default_branch", "labels"):
            if key in changes:
                if changes[key] is None:
                    raise ValidationFailed(f"{key} cannot be null", field=key)
                values[key] = changes[key]
        agent = changes.get("default_agent")
        if agent is not None and agent not in KNOWN_AGENTS:
            raise ValidationFailed(
                f"unknown agent {agent!r}; known: {', '.join(KNOWN_AGENTS)}", field="default_agent"
            )
        for key in ("default_agent", "git_credential"):
            if key in changes:
                values[key] = changes[key] or None
        if changes.get("ci") is not None:
            if self.prepare_ci is None:
                raise ValidationFailed("CI is not available on this server", field="ci")
            row = await self.store.get_row(project.id)
            ci, token = self.prepare_ci(row, changes["ci"])
            settings = {k: v for k, v in (row["settings"] or {}).items() if k != "ci"}
            values["settings"] = {**settings, "ci": ci} if ci else settings
            values["ci_token"] = token
        secret = None
        if changes.get("rotate_webhook_secret"):
            if self.new_webhook_secret is None:
                raise ValidationFailed(
                    "webhook secrets are not available on this server",
                    field="rotate_webhook_secret",
                )
            secret = values["webhook_secret"] = self.new_webhook_secret()
        if values:
            project = await self.store.update(project.id, **values)
        return project, secret

    async def delete(self, principal: Principal, ref: str, **options: Any) -> None:
        principal.require("projects:write")
        project = await self.get(principal, ref)
        await self.store.delete(project.id)
        for hook in self.on_delete:
            await hook(project, options)
