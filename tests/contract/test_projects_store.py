"""The ProjectStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the services rely on: a project is found by id or by name; names are unique; the
record carries the secrets wrapped (never in its repr) and an empty secret is none; an
update changes only the keys it names (None clears); a project with a running build cannot
be deleted, and deleting one that is gone is no error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from rdev.adapters.db.engine import Database
from rdev.adapters.db.projects import SqlProjectStore
from rdev.adapters.db.tables import builds
from rdev.domain.errors import Conflict, NotFound
from rdev.ports.projects import ProjectRecord, ProjectStore, reveal
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.projects import FakeProjectStore


class World(Protocol):
    store: ProjectStore

    async def start_build(self, project_id: str) -> None:
        """A running build of the project (the build store's business, not this port's)."""
        ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeProjectStore()
        self.store: ProjectStore = self.fake

    async def start_build(self, project_id: str) -> None:
        self.fake.mark_running(project_id)


class SqlWorld:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.store: ProjectStore = SqlProjectStore(db)

    async def start_build(self, project_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(builds).values(
                    task_id="t_" + project_id,
                    project_id=project_id,
                    status="running",
                    spec={"prompt": "do it"},
                    attempts=1,
                    max_attempts=3,
                    retries=0,
                    cancel_requested=False,
                    created_at=datetime.now(UTC),
                )
            )


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        yield FakeWorld()
        return
    async with migrated_database(request.param, tmp_path) as db:
        yield SqlWorld(db)


async def make(store: ProjectStore, name: str, **extra: Any) -> ProjectRecord:
    fields: dict[str, Any] = {"git_credential": None, **extra}
    return await store.create(
        name=name, repo_url=f"https://git.test/acme/{name}.git", default_branch="main", **fields
    )


async def test_a_project_is_found_by_id_and_by_name_with_everything_it_was_made_with(
    world: World,
) -> None:
    made = await world.store.create(
        name="shop",
        repo_url="https://git.test/acme/shop.git",
        default_branch="trunk",
        git_credential=SecretStr("user:pw"),
        default_agent="command",
        labels=["gpu", "eu"],
        settings={"repository": {"host": "local", "options": {"private": True}}},
        webhook_secret=SecretStr("whsec_abc"),
        ci_token=SecretStr("ci-token"),
        repo_host="local",
    )
    by_id = await world.store.get(made.id)
    by_name = await world.store.get("shop")
    assert by_id == by_name == made
    assert (made.name, made.repo_url, made.default_branch) == (
        "shop",
        "https://git.test/acme/shop.git",
        "trunk",
    )
    assert made.labels == ("gpu", "eu")
    assert made.settings == {"repository": {"host": "local", "options": {"private": True}}}
    assert (made.default_agent, made.repo_host) == ("command", "local")
    assert reveal(made.git_credential) == "user:pw"
    assert reveal(made.webhook_secret) == "whsec_abc"
    assert reveal(made.ci_token) == "ci-token"
    assert made.has_git_credential
    assert made.created_at.tzinfo is not None


async def test_secrets_never_show_in_the_records_repr_or_its_public_view(world: World) -> None:
    made = await make(world.store, "shop", webhook_secret=SecretStr("whsec_topsecret"))
    assert "whsec_topsecret" not in repr(made)
    public = made.as_project().model_dump_json()
    assert "whsec_topsecret" not in public
    assert made.as_project().has_git_credential is False


async def test_a_project_without_secrets_has_none_and_an_empty_credential_is_none(
    world: World,
) -> None:
    made = await make(world.store, "plain")
    assert (made.git_credential, made.ci_token, made.webhook_secret) == (None, None, None)
    blank = await world.store.create(
        name="blank",
        repo_url="file:///x",
        default_branch="main",
        git_credential=SecretStr(""),
    )
    assert blank.git_credential is None
    assert not blank.has_git_credential
    assert (made.labels, made.settings, made.default_agent, made.repo_host) == ((), {}, None, None)


async def test_a_second_project_of_a_name_is_a_conflict_on_name(world: World) -> None:
    await make(world.store, "shop")
    with pytest.raises(Conflict) as caught:
        await make(world.store, "shop")
    assert caught.value.field == "name"
    assert [p.name for p in await world.store.list()] == ["shop"]


async def test_an_unknown_project_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.store.get("nope")


async def test_projects_are_listed_by_name_and_only_filters_by_id_or_name(
    world: World,
) -> None:
    zoo = await make(world.store, "zoo")
    await make(world.store, "alpha")
    await make(world.store, "mid")
    assert [p.name for p in await world.store.list()] == ["alpha", "mid", "zoo"]
    only = await world.store.list([zoo.id, "alpha", "ghost"])
    assert [p.name for p in only] == ["alpha", "zoo"]
    assert await world.store.list([]) == []


async def test_an_update_changes_only_the_keys_it_names_and_none_clears_a_secret(
    world: World,
) -> None:
    made = await make(
        world.store,
        "shop",
        git_credential=SecretStr("old"),
        labels=["a"],
        settings={"ci": {"provider": "woodpecker"}, "repository": {"host": "local"}},
        webhook_secret=SecretStr("whsec_1"),
    )
    changed = await world.store.update(
        made.id,
        {"default_branch": "dev", "git_credential": None, "ci_token": SecretStr("tok")},
    )
    assert changed.default_branch == "dev"
    assert changed.git_credential is None
    assert reveal(changed.ci_token) == "tok"
    assert (changed.labels, reveal(changed.webhook_secret)) == (("a",), "whsec_1")
    assert changed.settings == made.settings
    again = await world.store.update(made.id, {"settings": {"repository": {"host": "local"}}})
    assert again.settings == {"repository": {"host": "local"}}
    assert await world.store.get(made.id) == again


async def test_updating_a_project_that_is_gone_is_not_found(world: World) -> None:
    with pytest.raises(NotFound):
        await world.store.update("0" * 32, {"default_branch": "dev"})


async def test_deleting_a_project_removes_it_and_deleting_it_again_is_no_error(
    world: World,
) -> None:
    made = await make(world.store, "shop")
    await world.store.delete(made.id)
    with pytest.raises(NotFound):
        await world.store.get(made.id)
    await world.store.delete(made.id)
    assert await world.store.list() == []


async def test_a_project_with_a_running_build_cannot_be_deleted(world: World) -> None:
    made = await make(world.store, "busy")
    await world.start_build(made.id)
    with pytest.raises(Conflict):
        await world.store.delete(made.id)
    assert (await world.store.get(made.id)).id == made.id


async def test_a_record_read_back_is_a_copy_not_the_callers_settings(world: World) -> None:
    settings = {"repository": {"host": "local"}}
    made = await make(world.store, "shop", settings=settings)
    settings["repository"]["host"] = "changed"
    assert (await world.store.get(made.id)).settings == {"repository": {"host": "local"}}
