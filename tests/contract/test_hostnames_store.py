"""The HostnameStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What the HostnameService relies on: a name is reserved once (a second claim, by any
project, sees the holder); a stale ``pending`` reservation is taken over only by its own
project; the per-project limit; state changes and deletes happen only from the expected
state; listings are per project, ordered by project name then name; a project's aliases go
with the project.

"Stale" is decided by the ``stale_before`` the caller passes: an hour ahead of now makes
every reservation stale, an hour back none, so no result depends on the machine's speed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import pytest
import sqlalchemy as sa

from rdev.adapters.db.engine import Database
from rdev.adapters.db.hostnames import SqlHostnameStore
from rdev.adapters.db.tables import projects
from rdev.domain.errors import NotFound
from rdev.domain.hostnames import AliasRecord, AliasState
from rdev.ports.hostnames import AlreadyThere, HostnameStore, LimitReached, Reserved
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.hostnames import FakeHostnameStore

PENDING, ACTIVE, DELETING = AliasState.PENDING, AliasState.ACTIVE, AliasState.DELETING


class World(Protocol):
    """A store plus the project rows the port does not write."""

    store: HostnameStore

    async def add_project(self, project_id: str, name: str) -> None: ...

    async def delete_project(self, project_id: str) -> None: ...


class FakeWorld:
    def __init__(self) -> None:
        self.fake = FakeHostnameStore()
        self.store: HostnameStore = self.fake

    async def add_project(self, project_id: str, name: str) -> None:
        self.fake.add_project(project_id, name)

    async def delete_project(self, project_id: str) -> None:
        self.fake.remove_project(project_id)


class SqlWorld:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.store: HostnameStore = SqlHostnameStore(db)

    async def add_project(self, project_id: str, name: str) -> None:
        now = datetime.now(UTC)
        async with self.db.write() as conn:
            await conn.execute(
                sa.insert(projects).values(
                    id=project_id,
                    name=name,
                    repo_url=f"https://git.test/acme/{name}.git",
                    default_branch="main",
                    labels=[],
                    settings={},
                    created_at=now,
                    updated_at=now,
                )
            )

    async def delete_project(self, project_id: str) -> None:
        async with self.db.write() as conn:
            await conn.execute(sa.delete(projects).where(projects.c.id == project_id))


@pytest.fixture(params=IMPLEMENTATIONS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "fake":
        yield FakeWorld()
        return
    async with migrated_database(request.param, tmp_path) as db:
        world = SqlWorld(db)
        yield world


@pytest.fixture
async def shop(world: World) -> World:
    """Two projects: ``shop`` (id p_shop) and ``blog`` (id p_blog)."""
    await world.add_project("p_shop", "shop")
    await world.add_project("p_blog", "blog")
    return world


def none_stale() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def all_stale() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


async def reserve(
    world: World,
    project_id: str,
    domain: str,
    *,
    limit: int = 20,
    stale_before: datetime | None = None,
) -> Reserved | AlreadyThere | LimitReached:
    return await world.store.reserve(
        project_id=project_id,
        domain=domain,
        unicode=domain.replace("xn--bcher-kva", "bücher"),
        target=f"{project_id.removeprefix('p_')}.apps.test",
        limit=limit,
        stale_before=stale_before or none_stale(),
    )


async def reserved(world: World, project_id: str, domain: str) -> AliasRecord:
    outcome = await reserve(world, project_id, domain)
    assert isinstance(outcome, Reserved), outcome
    return outcome.alias


async def state_of(world: World, domain: str) -> AliasState | None:
    alias = await world.store.get(domain)
    return alias.state if alias else None


# -- reserving a name ---------------------------------------------------------------------


async def test_a_new_name_is_reserved_pending_with_its_owner(shop: World) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    alias = await reserved(shop, "p_shop", "xn--bcher-kva.apps.test")
    assert (alias.project_id, alias.project_name) == ("p_shop", "shop")
    assert (alias.domain, alias.unicode) == ("xn--bcher-kva.apps.test", "bücher.apps.test")
    assert (alias.target, alias.state) == ("shop.apps.test", PENDING)
    assert alias.created_at >= before
    assert await shop.store.get("xn--bcher-kva.apps.test") == alias
    assert await shop.store.get("other.apps.test") is None


async def test_a_reserved_name_is_there_for_every_other_claim_with_its_holder(
    shop: World,
) -> None:
    first = await reserved(shop, "p_shop", "www.apps.test")
    other = await reserve(shop, "p_blog", "www.apps.test", stale_before=all_stale())
    assert other == AlreadyThere(first)  # another project never takes it over, stale or not
    again = await reserve(shop, "p_shop", "www.apps.test")  # fresh: its request still runs
    assert again == AlreadyThere(first)
    assert [a.domain for a in await shop.store.list()] == ["www.apps.test"]


async def test_a_stale_pending_reservation_is_taken_over_by_its_own_project(shop: World) -> None:
    first = await reserved(shop, "p_shop", "www.apps.test")
    taken = await reserve(shop, "p_shop", "www.apps.test", stale_before=all_stale())
    assert isinstance(taken, Reserved)
    assert (taken.alias.id, taken.alias.state) == (first.id, PENDING)
    assert taken.alias.created_at >= first.created_at
    assert await shop.store.get("www.apps.test") == taken.alias


async def test_an_active_alias_is_never_taken_over(shop: World) -> None:
    alias = await reserved(shop, "p_shop", "www.apps.test")
    assert await shop.store.set_state(alias.id, ACTIVE, expect=PENDING)
    outcome = await reserve(shop, "p_shop", "www.apps.test", stale_before=all_stale())
    assert isinstance(outcome, AlreadyThere) and outcome.alias.state is ACTIVE


async def test_the_per_project_limit_counts_every_state_but_not_other_projects(
    shop: World,
) -> None:
    one = await reserved(shop, "p_shop", "a.apps.test")
    await reserved(shop, "p_shop", "b.apps.test")
    assert await shop.store.set_state(one.id, DELETING, expect=PENDING)
    assert await reserve(shop, "p_shop", "c.apps.test", limit=2) == LimitReached(2)
    outcome = await reserve(shop, "p_shop", "a.apps.test", limit=2)  # its own: still there
    assert isinstance(outcome, AlreadyThere)
    assert isinstance(await reserve(shop, "p_blog", "c.apps.test", limit=2), Reserved)


async def test_reserving_for_a_missing_project_is_not_found(shop: World) -> None:
    with pytest.raises(NotFound):
        await reserve(shop, "p_gone", "www.apps.test")
    assert await shop.store.list() == []


# -- state changes and deletes name the state they expect ---------------------------------


async def test_a_state_changes_only_from_the_expected_state(shop: World) -> None:
    alias = await reserved(shop, "p_shop", "www.apps.test")
    assert not await shop.store.set_state(alias.id, DELETING, expect=ACTIVE)
    assert await state_of(shop, "www.apps.test") is PENDING
    assert await shop.store.set_state(alias.id, ACTIVE, expect=PENDING)
    assert not await shop.store.set_state(alias.id, ACTIVE, expect=PENDING)  # moved on
    assert await shop.store.set_state(alias.id, DELETING, expect=ACTIVE)
    assert await state_of(shop, "www.apps.test") is DELETING


async def test_a_state_change_of_a_deleted_alias_is_false(shop: World) -> None:
    alias = await reserved(shop, "p_shop", "www.apps.test")
    assert await shop.store.delete(alias.id)
    assert not await shop.store.set_state(alias.id, ACTIVE, expect=PENDING)
    assert await shop.store.get("www.apps.test") is None


async def test_delete_with_expect_deletes_only_from_that_state(shop: World) -> None:
    alias = await reserved(shop, "p_shop", "www.apps.test")
    assert await shop.store.set_state(alias.id, ACTIVE, expect=PENDING)
    assert not await shop.store.delete(alias.id, expect=PENDING)  # a late release: kept
    assert (await shop.store.get("www.apps.test")) is not None
    assert await shop.store.delete(alias.id, expect=ACTIVE)
    assert not await shop.store.delete(alias.id)  # already gone
    assert await shop.store.get("www.apps.test") is None


async def test_delete_without_expect_deletes_from_any_state(shop: World) -> None:
    alias = await reserved(shop, "p_shop", "www.apps.test")
    assert await shop.store.set_state(alias.id, DELETING, expect=PENDING)
    assert await shop.store.delete(alias.id)
    assert await shop.store.list() == []


# -- listing --------------------------------------------------------------------------------


async def test_list_is_per_project_and_state_ordered_by_project_name_then_name(
    shop: World,
) -> None:
    await reserved(shop, "p_shop", "z.apps.test")
    a = await reserved(shop, "p_shop", "a.apps.test")
    await reserved(shop, "p_blog", "m.apps.test")
    assert await shop.store.set_state(a.id, ACTIVE, expect=PENDING)

    everything = await shop.store.list()
    assert [(x.project_name, x.domain) for x in everything] == [
        ("blog", "m.apps.test"),
        ("shop", "a.apps.test"),
        ("shop", "z.apps.test"),
    ]
    mine = await shop.store.list(project_ids=["p_shop"])
    assert [x.domain for x in mine] == ["a.apps.test", "z.apps.test"]
    active = await shop.store.list(states=[ACTIVE])
    assert [x.domain for x in active] == ["a.apps.test"]
    both = await shop.store.list(project_ids=["p_shop", "p_blog"], states=[PENDING])
    assert [x.domain for x in both] == ["m.apps.test", "z.apps.test"]
    assert await shop.store.list(project_ids=[]) == []


async def test_a_projects_aliases_go_with_the_project(shop: World) -> None:
    await reserved(shop, "p_shop", "www.apps.test")
    await reserved(shop, "p_blog", "blog.apps.test")
    await shop.delete_project("p_shop")
    assert await shop.store.get("www.apps.test") is None
    assert [a.domain for a in await shop.store.list()] == ["blog.apps.test"]
    # the name is free again, for whoever asks
    assert isinstance(await reserve(shop, "p_blog", "www.apps.test"), Reserved)
