"""In-memory ProjectStore: the contract of ``adapters/db/projects.py`` without SQL.

Projects are found by id or name, listed by name; a second project of a name is a Conflict
on ``name``. The SQL store refuses to delete a project with a running build: here the
running builds are seeded with :meth:`FakeProjectStore.mark_running` (the SQL side's
``builds`` rows). Secrets are kept as the SQL columns keep them (plain values, an empty one
is none) and wrapped again when read.
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import SecretStr

from rdev.domain.errors import Conflict, NotFound
from rdev.ports.projects import ProjectChanges, ProjectRecord, reveal

_SECRETS = ("git_credential", "ci_token", "webhook_secret")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeProjectStore:
    clock: Callable[[], datetime] = _utc_now
    #: project id -> the stored columns (secrets revealed, as in the table)
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: project ids with a running build
    running: set[str] = field(default_factory=set)

    # -- seeding (not on the port) ---------------------------------------------------------

    def mark_running(self, project_id: str) -> None:
        self.running.add(project_id)

    # -- the port ----------------------------------------------------------------------------

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
    ) -> ProjectRecord:
        if any(row["name"] == name for row in self.rows.values()):
            raise Conflict(f"a project named {name!r} already exists", field="name")
        pid = uuid.uuid4().hex
        now = self.clock()
        self.rows[pid] = {
            "id": pid,
            "name": name,
            "repo_url": repo_url,
            "default_branch": default_branch,
            "git_credential": reveal(git_credential),
            "default_agent": default_agent,
            "labels": list(labels),
            "settings": _json_copy(settings or {}),
            "webhook_secret": reveal(webhook_secret),
            "ci_token": reveal(ci_token),
            "repo_host": repo_host,
            "created_at": now,
            "updated_at": now,
        }
        return await self.get(pid)

    async def get(self, ref: str) -> ProjectRecord:
        row = self.rows.get(ref) or next((r for r in self.rows.values() if r["name"] == ref), None)
        if row is None:
            raise NotFound(f"no project {ref!r}")
        return _record(row)

    async def list(self, only: builtins.list[str] | None = None) -> builtins.list[ProjectRecord]:
        rows = sorted(self.rows.values(), key=lambda r: r["name"])
        if only is not None:
            rows = [r for r in rows if r["id"] in only or r["name"] in only]
        return [_record(r) for r in rows]

    async def update(self, project_id: str, changes: ProjectChanges) -> ProjectRecord:
        row = self.rows.get(project_id)
        if row is not None:
            values: dict[str, Any] = dict(changes)
            for column in _SECRETS:
                if column in values:
                    values[column] = reveal(values[column])
            if "settings" in values:
                values["settings"] = _json_copy(values["settings"])
            row.update(values, updated_at=self.clock())
        return await self.get(project_id)

    async def delete(self, project_id: str) -> None:
        if project_id in self.running:
            raise Conflict("the project has running builds; cancel them first")
        self.rows.pop(project_id, None)


def _json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """What a JSON column gives back: a deep copy, never the caller's object."""
    return dict(json.loads(json.dumps(value)))


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def _record(row: Mapping[str, Any]) -> ProjectRecord:
    return ProjectRecord(
        id=row["id"],
        name=row["name"],
        repo_url=row["repo_url"],
        default_branch=row["default_branch"],
        created_at=row["created_at"],
        default_agent=row["default_agent"],
        labels=tuple(row["labels"]),
        settings=_json_copy(row["settings"]),
        git_credential=_secret(row["git_credential"]),
        ci_token=_secret(row["ci_token"]),
        webhook_secret=_secret(row["webhook_secret"]),
        repo_host=row["repo_host"],
    )
