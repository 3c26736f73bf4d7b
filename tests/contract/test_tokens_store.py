"""The TokenStore contract, one suite run against the in-memory fake, SQLite and PostgreSQL.

What authentication relies on: a token is found by its value only while it is not revoked;
the store never gives the value (or its hash) back; listing shows every token, revoked ones
too, oldest first; counting counts revoked ones (a first start is "no token ever").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import pytest

from rdev.adapters.db.tokens import SqlTokenStore
from rdev.ports.tokens import TokenStore
from tests.contract.databases import IMPLEMENTATIONS, migrated_database
from tests.fakes.tokens import FakeTokenStore


@pytest.fixture(params=IMPLEMENTATIONS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    if request.param == "fake":
        yield FakeTokenStore()
        return
    async with migrated_database(request.param, tmp_path) as db:
        yield SqlTokenStore(db)


async def test_a_token_is_found_by_its_value_with_its_name_scopes_and_projects(
    store: TokenStore,
) -> None:
    tid = await store.create(
        name="bot", token="rdev_value_1", scopes=["builds:read"], projects=["shop"]
    )
    found = await store.lookup("rdev_value_1")
    assert found is not None
    assert (found.id, found.name, found.scopes, found.projects) == (
        tid,
        "bot",
        ("builds:read",),
        ("shop",),
    )
    assert found.revoked_at is None
    assert found.created_at.tzinfo is not None


async def test_an_unknown_value_finds_nothing(store: TokenStore) -> None:
    await store.create(name="bot", token="rdev_value_1", scopes=["admin"], projects=None)
    assert await store.lookup("rdev_value_2") is None
    assert await store.lookup("") is None


async def test_a_token_for_every_project_has_no_project_list(store: TokenStore) -> None:
    await store.create(name="admin", token="rdev_admin", scopes=["admin"], projects=None)
    found = await store.lookup("rdev_admin")
    assert found is not None and found.projects is None


async def test_a_revoked_token_is_not_found_but_still_listed_and_counted(
    store: TokenStore,
) -> None:
    tid = await store.create(name="bot", token="rdev_v", scopes=["admin"], projects=None)
    await store.revoke(tid)
    assert await store.lookup("rdev_v") is None
    (listed,) = await store.list()
    assert listed.id == tid and listed.revoked_at is not None
    assert await store.count() == 1


async def test_revoking_by_name_ends_every_live_token_of_that_name_only(
    store: TokenStore,
) -> None:
    await store.create(name="worker", token="rdev_w1", scopes=["workers:run"], projects=None)
    await store.create(name="worker", token="rdev_w2", scopes=["workers:run"], projects=None)
    await store.create(name="other", token="rdev_o", scopes=["workers:run"], projects=None)
    await store.revoke_named("worker")
    assert await store.lookup("rdev_w1") is None
    assert await store.lookup("rdev_w2") is None
    assert await store.lookup("rdev_o") is not None


async def test_tokens_are_listed_oldest_first_without_their_values(store: TokenStore) -> None:
    ids = [
        await store.create(name=f"t{i}", token=f"rdev_secret_{i}", scopes=["admin"], projects=None)
        for i in range(3)
    ]
    listed = await store.list()
    assert [t.id for t in listed] == ids
    assert [t.name for t in listed] == ["t0", "t1", "t2"]
    for t in listed:
        assert set(asdict(t)) == {"id", "name", "scopes", "projects", "created_at", "revoked_at"}
        assert "rdev_secret" not in repr(t)


async def test_no_token_yet_counts_zero(store: TokenStore) -> None:
    assert await store.count() == 0
    assert await store.list() == []
