"""Projects: registration, lookup, deletion."""

from __future__ import annotations

import re
from typing import Any

from rdev.domain.auth import Principal
from rdev.domain.errors import ValidationFailed
from rdev.domain.models import Project

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

    async def create(self, principal: Principal, **fields: Any) -> Project:
        principal.require("projects:write")
        validate_slug(fields["name"])
        if principal.projects is not None and fields["name"] not in principal.projects:
            principal.require_project("", fields["name"])
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

    async def delete(self, principal: Principal, ref: str, **options: Any) -> None:
        principal.require("projects:write")
        project = await self.get(principal, ref)
        await self.store.delete(project.id)
        for hook in self.on_delete:
            await hook(project, options)
