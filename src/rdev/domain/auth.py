"""Who is calling and what they may do: scopes and project lists of API tokens."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import Forbidden

SCOPES = (
    "builds:read",
    "builds:write",
    "projects:read",
    "projects:write",
    "domains:write",
    "workers:run",
    "admin",
)


@dataclass(frozen=True)
class Principal:
    token_id: str
    name: str
    scopes: frozenset[str]
    #: Project ids or names this token may touch; None means every project.
    projects: frozenset[str] | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def actor(self) -> str:
        return f"token:{self.name}"

    def has(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def require(self, *scopes: str) -> None:
        """Require any one of ``scopes``."""
        if not any(self.has(s) for s in scopes):
            raise Forbidden(f"this token lacks the {' or '.join(scopes)} scope")

    def may_see_project(self, project_id: str, project_name: str) -> bool:
        return self.projects is None or bool({project_id, project_name} & self.projects)

    def require_project(self, project_id: str, project_name: str) -> None:
        if not self.may_see_project(project_id, project_name):
            raise Forbidden(f"this token may not touch project {project_name!r}")
