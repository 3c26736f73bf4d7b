"""HostnameService rules on the in-memory fakes: DNS and the stored aliases stay consistent.

No database, no DNS server, no HTTP: the store, the DNS provider and the project list are
the fakes of tests/fakes/hostnames.py, and time is a clock the test moves by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from rdev.domain.auth import Principal
from rdev.domain.errors import (
    AliasBusy,
    AliasDNSConflict,
    AliasLimitReached,
    AliasTaken,
    Conflict,
    NotFound,
    UpstreamFailed,
    ValidationFailed,
)
from rdev.domain.events import ProjectDeleted
from rdev.domain.hostnames import AliasState
from rdev.domain.models import Project
from rdev.ports.dns import DNSProvider, Drift
from rdev.ports.hostnames import Reserved
from rdev.services.hostnames import HostnameService
from tests.fakes.hostnames import FakeDNS, FakeHostnameStore, FakeProjects

ADMIN = Principal("t_admin", "admin", frozenset({"admin"}))


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


async def compare(expected: dict[str, str], dns: DNSProvider, fix: bool) -> list[Drift]:
    """A drift check over the fake: missing CNAMEs, put back with ``fix``."""
    drifts = []
    for alias, target in sorted(expected.items()):
        if await dns.lookup_cname(alias) is None:
            if fix:
                await dns.add_cname(alias, target)
            drifts.append(Drift(alias, target, None, "missing", fixed=fix))
    return drifts


@dataclass
class World:
    clock: Clock
    store: FakeHostnameStore
    dns: FakeDNS
    service: HostnameService


@pytest.fixture
def world() -> World:
    clock = Clock()
    store = FakeHostnameStore(clock=clock)
    store.add_project("p_shop", "shop")
    store.add_project("p_blog", "blog")
    dns = FakeDNS()
    service = HostnameService(
        store,
        FakeProjects(store),
        dns,
        compare=compare,
        apps_domain="apps.test",
        zones=["apps.test"],
        max_aliases_per_project=2,
        pending_stale_after=timedelta(minutes=2),
        clock=clock,
    )
    return World(clock, store, dns, service)


def states(world: World) -> dict[str, AliasState]:
    return {a.domain: a.state for a in world.store.aliases.values()}


# -- adding -----------------------------------------------------------------------------


async def test_adding_places_the_cname_and_activates_the_alias(world: World) -> None:
    hostname, created = await world.service.add(ADMIN, "shop", "WWW.Apps.Test.")
    assert created
    assert (hostname.domain, hostname.state, hostname.target) == (
        "www.apps.test",
        "active",
        "shop.apps.test",
    )
    assert world.dns.cnames == {"www.apps.test": "shop.apps.test"}
    assert states(world) == {"www.apps.test": AliasState.ACTIVE}
    again, created = await world.service.add(ADMIN, "shop", "www.apps.test")
    assert not created and again.state == "active"


async def test_a_dns_conflict_leaves_no_alias(world: World) -> None:
    world.dns.occupied.add("www.apps.test")
    with pytest.raises(AliasDNSConflict):
        await world.service.add(ADMIN, "shop", "www.apps.test")
    assert states(world) == {}


async def test_a_failing_dns_server_leaves_no_alias(world: World) -> None:
    world.dns.failing = True
    with pytest.raises(UpstreamFailed, match="no alias was added"):
        await world.service.add(ADMIN, "shop", "www.apps.test")
    assert states(world) == {}


async def test_a_project_deleted_while_its_cname_is_placed_gets_the_cname_undone(
    world: World,
) -> None:
    world.dns.on_add = lambda alias: world.store.remove_project("p_shop")
    with pytest.raises(NotFound, match="undone"):
        await world.service.add(ADMIN, "shop", "www.apps.test")
    assert world.dns.cnames == {}
    assert states(world) == {}


async def test_another_projects_alias_is_taken_and_named_only_to_who_may_see_it(
    world: World,
) -> None:
    await world.service.add(ADMIN, "blog", "www.apps.test")
    with pytest.raises(AliasTaken) as seen:
        await world.service.add(ADMIN, "shop", "www.apps.test")
    assert seen.value.extra == {"project": "blog"}
    shop_only = Principal("t_shop", "shop", frozenset({"admin"}), projects=frozenset({"shop"}))
    with pytest.raises(AliasTaken) as hidden:
        await world.service.add(shop_only, "shop", "www.apps.test")
    assert "blog" not in hidden.value.detail and hidden.value.extra == {}


async def test_the_alias_limit_is_a_conflict(world: World) -> None:
    await world.service.add(ADMIN, "shop", "a.apps.test")
    await world.service.add(ADMIN, "shop", "b.apps.test")
    with pytest.raises(AliasLimitReached, match="already has 2 aliases"):
        await world.service.add(ADMIN, "shop", "c.apps.test")


async def test_another_projects_canonical_hostname_cannot_be_an_alias(world: World) -> None:
    with pytest.raises(ValidationFailed, match="canonical hostname"):
        await world.service.add(ADMIN, "shop", "blog.apps.test")


async def test_a_pending_alias_is_busy_until_stale_then_a_retry_takes_it_over(
    world: World,
) -> None:
    reservation = await world.store.reserve(
        project_id="p_shop",
        domain="www.apps.test",
        unicode="www.apps.test",
        target="shop.apps.test",
        limit=2,
        stale_before=world.clock.now,
    )  # a request that died after reserving
    with pytest.raises(AliasBusy, match="being added"):
        await world.service.add(ADMIN, "shop", "www.apps.test")
    world.clock.advance(minutes=3)
    hostname, created = await world.service.add(ADMIN, "shop", "www.apps.test")
    assert created and hostname.state == "active"
    assert isinstance(reservation, Reserved)
    assert [a.id for a in world.store.aliases.values()] == [reservation.alias.id]


# -- removing ---------------------------------------------------------------------------


async def test_removing_deletes_the_cname_and_the_alias(world: World) -> None:
    await world.service.add(ADMIN, "shop", "www.apps.test")
    await world.service.remove(ADMIN, "shop", "WWW.apps.test")
    assert world.dns.cnames == {} and states(world) == {}
    with pytest.raises(NotFound):
        await world.service.remove(ADMIN, "shop", "www.apps.test")


async def test_a_failing_dns_server_on_remove_keeps_the_alias_as_it_was(world: World) -> None:
    await world.service.add(ADMIN, "shop", "www.apps.test")
    world.dns.failing = True
    with pytest.raises(UpstreamFailed, match="the alias was kept"):
        await world.service.remove(ADMIN, "shop", "www.apps.test")
    assert states(world) == {"www.apps.test": AliasState.ACTIVE}


async def test_an_alias_cannot_be_removed_through_another_project(world: World) -> None:
    await world.service.add(ADMIN, "blog", "www.apps.test")
    with pytest.raises(NotFound):
        await world.service.remove(ADMIN, "shop", "www.apps.test")
    assert world.dns.cnames == {"www.apps.test": "blog.apps.test"}


# -- the project's life -----------------------------------------------------------------


async def test_a_new_project_cannot_take_a_name_that_is_an_alias(world: World) -> None:
    await world.service.add(ADMIN, "shop", "promo.apps.test")
    with pytest.raises(Conflict) as refused:
        await world.service.refuse_taken_hostname("promo")
    assert refused.value.field == "name"
    await world.service.refuse_taken_hostname("fresh")


async def test_a_deleted_projects_aliases_leave_dns(world: World) -> None:
    await world.service.add(ADMIN, "shop", "a.apps.test")
    await world.service.add(ADMIN, "shop", "b.apps.test")
    await world.service.add(ADMIN, "blog", "c.apps.test")
    aliases = await world.service.aliases_of("p_shop")  # read before the row goes
    assert [a.domain for a in aliases] == ["a.apps.test", "b.apps.test"]
    world.store.remove_project("p_shop")
    project = Project(id="p_shop", name="shop", repo_url="x", created_at=world.clock.now)
    await world.service.on_project_deleted(ProjectDeleted(project, aliases=aliases))
    assert world.dns.cnames == {"c.apps.test": "blog.apps.test"}


async def test_a_failing_dns_server_does_not_fail_the_deleted_projects_cleanup(
    world: World,
) -> None:
    await world.service.add(ADMIN, "shop", "a.apps.test")
    aliases = await world.service.aliases_of("p_shop")
    world.dns.failing = True
    project = Project(id="p_shop", name="shop", repo_url="x", created_at=world.clock.now)
    await world.service.on_project_deleted(ProjectDeleted(project, aliases=aliases))  # logged


# -- reading and reconciling --------------------------------------------------------------


async def test_export_shows_the_projects_a_token_may_see_with_active_aliases(
    world: World,
) -> None:
    await world.service.add(ADMIN, "shop", "www.apps.test")
    await world.service.add(ADMIN, "blog", "news.apps.test")
    everything = await world.service.export(ADMIN)
    assert [(p.project_name, [a.domain for a in p.aliases]) for p in everything] == [
        ("blog", ["news.apps.test"]),
        ("shop", ["www.apps.test"]),
    ]
    shop_only = Principal("t_shop", "shop", frozenset({"admin"}), projects=frozenset({"shop"}))
    [shop] = await world.service.export(shop_only)
    assert shop.canonical.domain == "shop.apps.test"


async def test_reconcile_restores_missing_cnames_and_settles_stale_pending_ones(
    world: World,
) -> None:
    await world.service.add(ADMIN, "shop", "www.apps.test")
    del world.dns.cnames["www.apps.test"]  # deleted behind rdev's back
    fresh = await world.store.reserve(
        project_id="p_blog",
        domain="fresh.apps.test",
        unicode="fresh.apps.test",
        target="blog.apps.test",
        limit=2,
        stale_before=world.clock.now,
    )
    report = await world.service.reconcile(fix=False)
    assert [d.alias for d in report.drifts] == ["www.apps.test"] and not report.clean
    assert report.checked == 1  # the fresh pending alias belongs to a running request

    world.clock.advance(minutes=3)  # now that request is dead: its alias is checked too
    world.dns.cnames["fresh.apps.test"] = "blog.apps.test"
    report = await world.service.reconcile(fix=True)
    assert report.clean and report.checked == 2
    assert report.activated == ["fresh.apps.test"]
    assert world.dns.cnames["www.apps.test"] == "shop.apps.test"
    assert isinstance(fresh, Reserved)
    assert world.store.aliases[fresh.alias.id].state is AliasState.ACTIVE
