"""The local repositories' rules on fakes, in milliseconds: task git credentials live exactly
as long as their task's lease; a deleted project's local repository is removed only when
asked and only when it is this server's own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rdev.domain.events import ProjectDeleted
from rdev.domain.models import Project
from rdev.ports.leases import LiveLease
from rdev.ports.repohost import CreatedRepo
from rdev.services.repos import TaskGitCredentials, local_repository_remover


class Leases:
    def __init__(self) -> None:
        self.leases: dict[str, LiveLease] = {}

    async def live_lease(self, task_id: str) -> LiveLease | None:
        return self.leases.get(task_id)


async def test_a_task_credential_names_its_project_while_the_lease_lives() -> None:
    leases = Leases()
    credentials = TaskGitCredentials(leases)
    leases.leases["task1"] = LiveLease(lease_token="lease-a", project_name="shop")
    credential = credentials.mint("task1", "lease-a")
    assert credential.startswith("rdevgit_task1.")
    assert await credentials.project_of(credential) == "shop"
    leases.leases["task1"] = LiveLease(lease_token="lease-b", project_name="shop")  # reclaimed
    assert await credentials.project_of(credential) is None
    del leases.leases["task1"]  # reaped or completed
    assert await credentials.project_of(credentials.mint("task1", "lease-b")) is None


async def test_a_forged_or_malformed_credential_names_no_project() -> None:
    leases = Leases()
    leases.leases["task1"] = LiveLease(lease_token="lease-a", project_name="shop")
    credentials = TaskGitCredentials(leases)
    for bad in ("rdevgit_task1.forged", "rdevgit_task1", "rdevgit_.x", "rdev_task1.x", ""):
        assert await credentials.project_of(bad) is None


class Host:
    name = "local"

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def clone_url(self, name: str) -> str | None:
        return f"http://rdev.test/git/{name}.git"

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        raise AssertionError("not used")

    async def delete(self, name: str, options: dict[str, Any]) -> None:
        self.deleted.append(name)


def project(name: str, repo_url: str, settings: dict[str, Any] | None = None) -> Project:
    return Project(
        id="p-" + name,
        name=name,
        repo_url=repo_url,
        settings=settings or {},
        created_at=datetime.now(UTC),
    )


async def test_a_deleted_projects_own_repository_is_removed_only_when_asked() -> None:
    host = Host()
    remove = local_repository_remover(host)
    made_here = project("a", "http://elsewhere/a.git", {"repository": {"host": "local"}})
    served_here = project("b", "http://rdev.test/git/b.git")
    foreign = project("c", "https://git.test/acme/c.git")
    await remove(ProjectDeleted(project=made_here, delete_repository=False))
    assert host.deleted == []
    for p in (made_here, served_here, foreign):
        await remove(ProjectDeleted(project=p, delete_repository=True))
    assert host.deleted == ["a", "b"]
