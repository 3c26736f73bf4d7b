"""ProjectService and TokenService rules on in-memory fakes: milliseconds, no database.

A project's life as the service runs it: the hostname rule is asked before anything is
stored; the webhook secret is made by the service and shown once; a PATCH changes only what
it names; a deletion is announced after the row is gone, with the aliases that went with
it. Tokens: authentication is cached briefly (an injected clock), and a revocation is felt
at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from rdev.domain.auth import Principal
from rdev.domain.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from rdev.domain.events import ProjectDeleted
from rdev.domain.hostnames import AliasRecord, AliasState
from rdev.ports.projects import ProjectRecord
from rdev.services.events import EventBus
from rdev.services.projects import ProjectRegistration, ProjectService
from rdev.services.tokens import TokenService
from tests.fakes.projects import FakeProjectStore
from tests.fakes.tokens import FakeTokenStore

ADMIN = Principal(token_id="t1", name="admin", scopes=frozenset({"admin"}), projects=None)


class Hostnames:
    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.aliases: dict[str, tuple[AliasRecord, ...]] = {}

    async def refuse_taken_hostname(self, project_name: str) -> None:
        if project_name in self.taken:
            raise Conflict("taken", field="name")

    async def aliases_of(self, project_id: str) -> tuple[AliasRecord, ...]:
        return self.aliases.get(project_id, ())


class World:
    def __init__(self, *, prepare_ci: Any = None) -> None:
        self.store = FakeProjectStore()
        self.events = EventBus()
        self.hostnames = Hostnames()
        self.secrets = iter(f"whsec_{i}" for i in range(100))
        self.projects = ProjectService(
            self.store,
            self.events,
            hostnames=self.hostnames,
            prepare_ci=prepare_ci,
            new_webhook_secret=lambda: next(self.secrets),
        )

    async def register(self, name: str = "shop") -> ProjectRecord:
        await self.projects.create(ADMIN, ProjectRegistration(name=name, repo_url="file:///x"))
        return await self.store.get(name)


async def test_a_new_project_gets_a_webhook_secret_shown_once_and_stored() -> None:
    w = World()
    created = await w.projects.create(ADMIN, ProjectRegistration(name="shop", repo_url="file:///x"))
    assert created.webhook_secret == "whsec_0"
    assert (await w.store.get("shop")).webhook_secret == SecretStr("whsec_0")
    assert "webhook_secret" not in created.project.model_dump()


async def test_a_name_whose_hostname_is_taken_is_refused_before_anything_is_stored() -> None:
    w = World()
    w.hostnames.taken.add("shop")
    with pytest.raises(Conflict):
        await w.projects.create(ADMIN, ProjectRegistration(name="shop", repo_url="file:///x"))
    assert await w.store.list() == []


async def test_a_name_that_is_not_a_slug_is_refused() -> None:
    w = World()
    with pytest.raises(ValidationFailed) as caught:
        await w.projects.create(ADMIN, ProjectRegistration(name="Shop_1", repo_url="file:///x"))
    assert caught.value.field == "name"


async def test_a_token_limited_to_projects_cannot_register_another_name() -> None:
    w = World()
    limited = Principal(
        token_id="t2", name="bot", scopes=frozenset({"projects:write"}), projects=frozenset({"a"})
    )
    with pytest.raises(Forbidden):
        await w.projects.create(limited, ProjectRegistration(name="b", repo_url="file:///x"))
    await w.projects.create(limited, ProjectRegistration(name="a", repo_url="file:///x"))


async def test_a_deletion_is_announced_after_the_row_is_gone_with_its_aliases() -> None:
    w = World()
    record = await w.register()
    alias = AliasRecord(
        id=1,
        project_id=record.id,
        project_name="shop",
        domain="shop.example.org",
        unicode="shop.example.org",
        target="shop.apps.test",
        state=AliasState.ACTIVE,
        created_at=datetime.now(UTC),
    )
    w.hostnames.aliases[record.id] = (alias,)
    seen: list[tuple[ProjectDeleted, bool]] = []

    async def follower(event: ProjectDeleted) -> None:
        gone = not await w.projects.exists(event.project.id)
        seen.append((event, gone))

    w.events.subscribe(ProjectDeleted, follower)
    await w.projects.delete(ADMIN, "shop", delete_repository=True)
    ((event, gone),) = seen
    assert gone
    assert event.project == record.as_project()
    assert event.delete_repository is True
    assert event.aliases == (alias,)


async def test_a_refused_deletion_announces_nothing() -> None:
    w = World()
    record = await w.register()
    w.store.mark_running(record.id)
    seen: list[ProjectDeleted] = []

    async def follower(event: ProjectDeleted) -> None:
        seen.append(event)

    w.events.subscribe(ProjectDeleted, follower)
    with pytest.raises(Conflict):
        await w.projects.delete(ADMIN, "shop", delete_repository=False)
    assert seen == []


async def test_a_patch_changes_only_what_it_names() -> None:
    w = World()
    before = await w.register()
    project, secret = await w.projects.patch(ADMIN, "shop", {"labels": ["gpu"]})
    after = await w.store.get("shop")
    assert secret is None
    assert after.labels == ("gpu",) and project.labels == ["gpu"]
    assert (after.default_branch, after.webhook_secret) == (
        before.default_branch,
        before.webhook_secret,
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"default_branch": None}, "default_branch"),
        ({"labels": None}, "labels"),
        ({"default_agent": "nope"}, "default_agent"),
        ({"ci": {"provider": "woodpecker"}}, "ci"),  # no CI on this server
    ],
)
async def test_a_patch_the_rules_refuse_names_the_field(
    changes: dict[str, Any], field: str
) -> None:
    w = World()
    await w.register()
    with pytest.raises(ValidationFailed) as caught:
        await w.projects.patch(ADMIN, "shop", changes)
    assert caught.value.field == field


async def test_an_empty_git_credential_clears_it_and_a_new_one_is_stored_wrapped() -> None:
    w = World()
    await w.register()
    await w.projects.patch(ADMIN, "shop", {"git_credential": "user:pw"})
    assert (await w.store.get("shop")).git_credential == SecretStr("user:pw")
    project, _ = await w.projects.patch(ADMIN, "shop", {"git_credential": ""})
    assert (await w.store.get("shop")).git_credential is None
    assert not project.has_git_credential


async def test_rotating_the_webhook_secret_returns_the_new_one_once() -> None:
    w = World()
    await w.register()
    _, secret = await w.projects.patch(ADMIN, "shop", {"rotate_webhook_secret": True})
    assert secret == "whsec_1"
    assert (await w.store.get("shop")).webhook_secret == SecretStr("whsec_1")


async def test_a_ci_patch_replaces_only_the_ci_settings_and_stores_the_token() -> None:
    calls: list[tuple[ProjectRecord, Mapping[str, Any]]] = []

    def prepare_ci(
        project: ProjectRecord, patch: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        calls.append((project, patch))
        return {"provider": "woodpecker", "has_token": True}, "ci-token"

    w = World(prepare_ci=prepare_ci)
    record = await w.register()
    await w.store.update(record.id, {"settings": {"repository": {"host": "local"}}})
    await w.projects.patch(ADMIN, "shop", {"ci": {"provider": "woodpecker", "token": "x"}})
    after = await w.store.get("shop")
    assert after.settings == {
        "repository": {"host": "local"},
        "ci": {"provider": "woodpecker", "has_token": True},
    }
    assert after.ci_token == SecretStr("ci-token")
    assert calls[0][0].id == record.id  # it saw the project's current CI


async def test_a_project_another_token_may_not_see_is_forbidden_not_revealed() -> None:
    w = World()
    await w.register("secret-project")
    limited = Principal(
        token_id="t2", name="bot", scopes=frozenset({"projects:read"}), projects=frozenset({"a"})
    )
    with pytest.raises(Forbidden):
        await w.projects.get(limited, "secret-project")
    with pytest.raises(NotFound):
        await w.projects.get(ADMIN, "nothing")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_authentication_is_cached_briefly_then_looked_up_again() -> None:
    store = FakeTokenStore()
    clock = Clock()
    tokens = TokenService(store, clock=clock)
    tid, value = await tokens.create("bot", ["builds:read"], ["shop"])
    principal = await tokens.authenticate(value)
    assert (principal.token_id, principal.projects) == (tid, frozenset({"shop"}))
    await store.revoke(tid)  # behind the service's back: the cache still answers
    assert (await tokens.authenticate(value)).token_id == tid
    clock.now += 6
    with pytest.raises(Unauthorized):
        await tokens.authenticate(value)


async def test_a_revocation_through_the_service_is_felt_at_once() -> None:
    tokens = TokenService(FakeTokenStore(), clock=Clock())
    tid, value = await tokens.create("bot", ["admin"])
    await tokens.authenticate(value)
    await tokens.revoke(tid)
    with pytest.raises(Unauthorized):
        await tokens.authenticate(value)


async def test_the_first_start_makes_one_admin_token_and_a_configured_one_is_registered() -> None:
    tokens = TokenService(FakeTokenStore())
    first = await tokens.ensure_admin(None)
    assert first is not None and (await tokens.authenticate(first)).has("admin")
    assert await tokens.ensure_admin(None) is None  # tokens exist: nothing new
    assert await tokens.ensure_admin("rdev_configured_value") is None
    assert await tokens.ensure_admin("rdev_configured_value") is None
    assert [t.name for t in await tokens.list()] == ["bootstrap-admin", "admin"]


async def test_unknown_scopes_are_refused() -> None:
    tokens = TokenService(FakeTokenStore())
    with pytest.raises(ValidationFailed) as caught:
        await tokens.create("bot", ["builds:fly"])
    assert caught.value.field == "scopes"


async def test_access_is_checked_only_for_a_token_limited_to_projects() -> None:
    w = World()
    await w.register("shop")
    limited = Principal(
        token_id="t2", name="bot", scopes=frozenset(), projects=frozenset({"other"})
    )
    with pytest.raises(Forbidden):
        await w.projects.require_access(limited, "shop")
    await w.projects.require_access(ADMIN, "missing")  # unlimited: nothing to look up
    with pytest.raises(NotFound):
        await w.projects.require_access(limited, "missing")
