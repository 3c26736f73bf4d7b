"""/projects/{id}/domains and /domains against a real BIND 9 and both database backends.

Each test gets its own ``named`` (tests/fixtures/bind.py, zone ``apps.test``) and a
container whose apps domain is that zone, so canonical hostnames are ``{project}.apps.test``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, select

from rdev.adapters.db.tables import domains as domains_table
from rdev.adapters.db.tables import projects as projects_table
from rdev.adapters.dns import Rfc2136DNS
from rdev.api.app import create_app
from rdev.bootstrap import Container, build_container
from rdev.config import Settings
from rdev.hostnames_cli import reconcile_command
from tests.conftest import ADMIN_TOKEN, make_token
from tests.factories import create_project
from tests.fixtures.bind import BindServer, running_bind


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[BindServer]:
    yield from running_bind(tmp_path / "bind")


def dns_settings(settings: Settings, bind: BindServer, **over: Any) -> Settings:
    values: dict[str, Any] = {
        "apps_domain": bind.zone,
        "dns_provider": "rfc2136",
        "dns_server": bind.server,
        "dns_port": bind.port,
        "dns_zones": [bind.zone],
        "dns_tsig_name": bind.key_name,
        "dns_tsig_algorithm": bind.key_algorithm,
        "dns_tsig_secret": bind.key_secret,
    }
    values.update(over)
    return settings.model_copy(update=values)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    container = build_container(settings)
    await container.start(background=False)
    app = create_app(settings, container=container)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://rdev.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        ) as client:
            yield container, client
    finally:
        await container.stop()


@pytest.fixture
async def api(
    settings: Settings, bind: BindServer
) -> AsyncIterator[tuple[Container, httpx.AsyncClient]]:
    async with serving(dns_settings(settings, bind)) as pair:
        yield pair


async def add(client: httpx.AsyncClient, project: str, domain: str, **kw: Any) -> httpx.Response:
    return await client.post(f"/projects/{project}/domains", json={"domain": domain}, **kw)


async def rows(container: Container) -> list[str]:
    async with container.db.read() as conn:
        result = await conn.execute(select(domains_table.c.domain))
        return sorted(r[0] for r in result)


# -- adding, listing, removing ----------------------------------------------------------


async def test_post_places_a_cname_to_the_canonical_hostname(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    r = await add(client, project["name"], "WWW.Apps.Test.")
    assert r.status_code == 201, r.text
    canonical = f"{project['name']}.apps.test"
    assert r.json() | {"created_at": None} == {
        "domain": "www.apps.test",
        "unicode": "www.apps.test",
        "kind": "alias",
        "state": "active",
        "target": canonical,
        "created_at": None,
    }
    assert bind.query("www.apps.test", "CNAME") == [canonical + "."]

    listed = (await client.get(f"/projects/{project['id']}/domains")).json()
    assert listed["canonical"] == {
        "domain": canonical,
        "unicode": canonical,
        "kind": "canonical",
        "state": "active",
        "target": None,
        "created_at": None,
    }
    assert [(a["domain"], a["state"]) for a in listed["aliases"]] == [("www.apps.test", "active")]


async def test_same_alias_again_for_the_same_project_is_200(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    assert (await add(client, project["name"], "again.apps.test")).status_code == 201
    r = await add(client, project["id"], "again.apps.test")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active"
    assert await rows(container) == ["again.apps.test"]


async def test_a_project_cannot_be_named_onto_an_existing_alias(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    assert (await add(client, project["name"], "future.apps.test")).status_code == 201
    r = await client.post("/projects", json={"name": "future", "repo_url": "file:///x"})
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "name"
    assert [p["name"] for p in (await client.get("/projects")).json()] == [project["name"]]


async def test_unicode_alias_is_stored_as_a_label_and_shown_both_ways(
    api, bind: BindServer
) -> None:
    _, client = api
    project = await create_project(client)
    r = await add(client, project["name"], "Bücher.apps.test")
    assert r.status_code == 201, r.text
    assert (r.json()["domain"], r.json()["unicode"]) == (
        "xn--bcher-kva.apps.test",
        "bücher.apps.test",
    )
    assert bind.query("xn--bcher-kva.apps.test", "CNAME") == [f"{project['name']}.apps.test."]
    r = await client.delete(f"/projects/{project['name']}/domains/bücher.apps.test")
    assert r.status_code == 204, r.text
    assert bind.query("xn--bcher-kva.apps.test", "CNAME") == []


async def test_delete_removes_the_cname_and_unknown_alias_is_404(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    assert (await add(client, project["name"], "gone.apps.test")).status_code == 201
    r = await client.delete(f"/projects/{project['name']}/domains/gone.apps.test")
    assert r.status_code == 204, r.text
    assert bind.query("gone.apps.test", "CNAME") == []
    assert await rows(container) == []
    r = await client.delete(f"/projects/{project['name']}/domains/gone.apps.test")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_alias_of_another_project_cannot_be_deleted_through_this_one(
    api, bind: BindServer
) -> None:
    _, client = api
    owner, other = await create_project(client), await create_project(client)
    assert (await add(client, owner["name"], "mine.apps.test")).status_code == 201
    r = await client.delete(f"/projects/{other['name']}/domains/mine.apps.test")
    assert r.status_code == 404
    assert bind.query("mine.apps.test", "CNAME") == [f"{owner['name']}.apps.test."]


async def test_alias_survives_a_bind_restart(api, bind: BindServer) -> None:
    _, client = api
    project = await create_project(client)
    assert (await add(client, project["name"], "durable.apps.test")).status_code == 201
    bind.stop()
    bind.start()
    assert bind.query("durable.apps.test", "CNAME") == [f"{project['name']}.apps.test."]


# -- DNS failures leave no row ----------------------------------------------------------


async def test_wrong_tsig_secret_is_502_and_leaves_no_row(
    settings: Settings, bind: BindServer
) -> None:
    wrong = "d3JvbmctYnV0LXZhbGlkLWJhc2U2NC1zZWNyZXQtMTIzNA=="
    async with serving(dns_settings(settings, bind, dns_tsig_secret=wrong)) as (c, client):
        project = await create_project(client)
        r = await add(client, project["name"], "badkey.apps.test")
        assert r.status_code == 502, r.text
        body = r.json()
        assert body["type"].endswith("/upstream-failed")
        assert "TSIG" in body["detail"] and wrong not in r.text
        assert bind.key_secret not in r.text
        assert await rows(c) == []
        assert (await client.get(f"/projects/{project['name']}/domains")).json()["aliases"] == []
    assert bind.query("badkey.apps.test", "CNAME") == []


async def test_stopped_bind_is_502_and_leaves_no_row(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    bind.stop()
    r = await add(client, project["name"], "down.apps.test")
    assert r.status_code == 502, r.text
    assert "refused" in r.json()["detail"]
    assert await rows(container) == []


async def test_stopped_bind_on_delete_is_502_and_keeps_the_alias(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    assert (await add(client, project["name"], "kept.apps.test")).status_code == 201
    bind.stop()
    r = await client.delete(f"/projects/{project['name']}/domains/kept.apps.test")
    assert r.status_code == 502, r.text
    listed = (await client.get(f"/projects/{project['name']}/domains")).json()
    assert [(a["domain"], a["state"]) for a in listed["aliases"]] == [("kept.apps.test", "active")]


async def test_name_holding_other_records_is_409_and_leaves_no_row(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    r = await add(client, project["name"], "ingress.apps.test")  # an A record in the zone
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/dns-conflict")
    assert await rows(container) == []
    assert bind.query("ingress.apps.test", "A") == ["127.0.0.10"]


# -- validation -------------------------------------------------------------------------


async def test_invalid_names_are_422_naming_the_rule(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    other = await create_project(client)
    cases = {
        "a..b.apps.test": "empty label",
        "-x.apps.test": "hyphen",
        "x" * 64 + ".apps.test": "longer than 63",
        "*.apps.test": "wildcard",
        "evil.example.org": "not under an allowed zone",
        f"{project['name']}.apps.test": "canonical hostname",
        f"{other['name']}.apps.test": "canonical hostname",
        "apps.test": "zone apex",
        "under_score.apps.test": "letters, digits and hyphens",
    }
    for name, rule in cases.items():
        r = await add(client, project["name"], name)
        assert r.status_code == 422, (name, r.text)
        body = r.json()
        assert body["field"] == "domain", (name, body)
        assert rule in body["detail"], (name, body["detail"])
    r = await client.post(f"/projects/{project['name']}/domains", json={})
    assert r.status_code == 422 and r.json()["field"] == "domain"
    assert await rows(container) == []


async def test_per_project_limit_is_409(settings: Settings, bind: BindServer) -> None:
    async with serving(dns_settings(settings, bind, dns_max_aliases_per_project=2)) as (c, client):
        project = await create_project(client)
        for name in ("one.apps.test", "two.apps.test"):
            assert (await add(client, project["name"], name)).status_code == 201
        r = await add(client, project["name"], "three.apps.test")
        assert r.status_code == 409, r.text
        assert r.json()["type"].endswith("/alias-limit")
        assert "RDEV_DNS_MAX_ALIASES_PER_PROJECT" in r.json()["detail"]
        assert (await add(client, project["name"], "two.apps.test")).status_code == 200
    assert bind.query("three.apps.test", "CNAME") == []


# -- one project per alias --------------------------------------------------------------


async def test_two_projects_racing_for_one_alias_get_one_201_one_409_one_cname(
    api, bind: BindServer
) -> None:
    container, client = api
    a, b = await create_project(client), await create_project(client)
    ra, rb = await asyncio.gather(
        add(client, a["name"], "race.apps.test"), add(client, b["name"], "race.apps.test")
    )
    assert sorted([ra.status_code, rb.status_code]) == [201, 409], (ra.text, rb.text)
    winner = a if ra.status_code == 201 else b
    loser = rb if ra.status_code == 201 else ra
    assert loser.json()["type"].endswith("/alias-taken")
    assert bind.query("race.apps.test", "CNAME") == [f"{winner['name']}.apps.test."]
    assert await rows(container) == ["race.apps.test"]


async def test_taken_alias_names_the_owner_only_to_a_token_that_may_see_it(
    api, bind: BindServer
) -> None:
    container, client = api
    owner, mine = await create_project(client), await create_project(client)
    assert (await add(client, owner["name"], "taken.apps.test")).status_code == 201

    r = await add(client, mine["name"], "taken.apps.test")  # admin sees every project
    assert r.status_code == 409 and owner["name"] in r.json()["detail"]

    narrow = await make_token(container, ["projects:write"], [mine["name"]])
    r = await add(client, mine["name"], "taken.apps.test", headers=narrow)
    assert r.status_code == 409, r.text
    assert owner["name"] not in r.text and owner["id"] not in r.text


# -- scopes -----------------------------------------------------------------------------


async def test_scopes_and_project_lists_guard_the_endpoints(api, bind: BindServer) -> None:
    container, client = api
    project, hidden = await create_project(client), await create_project(client)
    url = f"/projects/{project['name']}/domains"

    r = await client.get(url, headers={"Authorization": ""})
    assert r.status_code == 401
    r = await add(client, project["name"], "x.apps.test", headers={"Authorization": ""})
    assert r.status_code == 401

    reader = await make_token(container, ["projects:read"])
    assert (await client.get(url, headers=reader)).status_code == 200
    assert (await add(client, project["name"], "x.apps.test", headers=reader)).status_code == 403
    r = await client.delete(f"{url}/x.apps.test", headers=reader)
    assert r.status_code == 403

    builder = await make_token(container, ["builds:write"])
    assert (await client.get(url, headers=builder)).status_code == 403
    assert (await client.get("/domains", headers=builder)).status_code == 403

    dns_only = await make_token(container, ["domains:write"], [project["name"]])
    r = await add(client, project["name"], "x.apps.test", headers=dns_only)
    assert r.status_code == 201, r.text
    r = await add(client, hidden["name"], "y.apps.test", headers=dns_only)
    assert r.status_code == 403
    r = await client.get(
        f"/projects/{hidden['name']}/domains",
        headers=await make_token(container, ["projects:read"], [project["id"]]),
    )
    assert r.status_code == 403
    assert (await client.delete(f"{url}/x.apps.test", headers=dns_only)).status_code == 204
    assert await rows(container) == []


async def test_export_lists_hostnames_of_projects_the_token_may_see(api, bind: BindServer) -> None:
    container, client = api
    seen, hidden = await create_project(client), await create_project(client)
    assert (await add(client, seen["name"], "shop.apps.test")).status_code == 201
    assert (await add(client, hidden["name"], "secret.apps.test")).status_code == 201

    r = await client.get(
        "/domains", headers=await make_token(container, ["projects:read"], [seen["name"]])
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["apps_domain"], body["dns_provider"]) == ("apps.test", "rfc2136")
    assert [
        (p["project_name"], p["canonical"]["domain"], [a["domain"] for a in p["aliases"]])
        for p in body["projects"]
    ] == [(seen["name"], f"{seen['name']}.apps.test", ["shop.apps.test"])]
    everything = (await client.get("/domains")).json()
    assert {a["domain"] for p in everything["projects"] for a in p["aliases"]} == {
        "shop.apps.test",
        "secret.apps.test",
    }


# -- consistency with the project's life ------------------------------------------------


async def test_deleting_a_project_removes_its_aliases_from_dns(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    for name in ("a1.apps.test", "a2.apps.test"):
        assert (await add(client, project["name"], name)).status_code == 201
    assert (await client.delete(f"/projects/{project['name']}")).status_code == 204
    assert bind.query("a1.apps.test", "CNAME") == []
    assert bind.query("a2.apps.test", "CNAME") == []
    assert await rows(container) == []


class _ProjectVanishesDuringUpdate(Rfc2136DNS):
    """The real adapter; while the CNAME is being placed, the project row is deleted."""

    container: Container
    project_id: str

    async def add_cname(self, alias: str, target: str) -> None:
        await super().add_cname(alias, target)
        async with self.container.db.write() as conn:
            await conn.execute(delete(projects_table).where(projects_table.c.id == self.project_id))


async def test_dns_change_is_undone_when_the_row_cannot_be_confirmed(api, bind: BindServer) -> None:
    container, client = api
    project = await create_project(client)
    dns = _ProjectVanishesDuringUpdate(**bind.provider_kwargs())  # type: ignore[arg-type]
    dns.container, dns.project_id = container, project["id"]
    container.hostnames.dns = dns
    r = await add(client, project["name"], "orphan.apps.test")
    assert r.status_code == 404, r.text
    assert "undone" in r.json()["detail"]
    assert bind.query("orphan.apps.test", "CNAME") == []
    assert await rows(container) == []


# -- reconcile --------------------------------------------------------------------------


async def test_reconcile_finds_an_alias_deleted_behind_rdevs_back_and_fix_restores_it(
    settings: Settings, bind: BindServer
) -> None:
    configured = dns_settings(settings, bind)
    async with serving(configured) as (_, client):
        project = await create_project(client)
        assert (await add(client, project["name"], "drift.apps.test")).status_code == 201
        assert (await add(client, project["name"], "fine.apps.test")).status_code == 201
    bind.delete_records("drift.apps.test", "CNAME")

    out: list[str] = []
    assert await reconcile_command(configured, fix=False, echo=out.append) == 1
    assert any(line.startswith("missing") and "drift.apps.test" in line for line in out), out
    assert not any("fine.apps.test" in line for line in out), out
    assert bind.query("drift.apps.test", "CNAME") == []

    out.clear()
    assert await reconcile_command(configured, fix=True, echo=out.append) == 0
    assert any("drift.apps.test" in line and "fixed" in line for line in out), out
    assert bind.query("drift.apps.test", "CNAME") == [f"{project['name']}.apps.test."]

    out.clear()
    assert await reconcile_command(configured, fix=False, echo=out.append) == 0
    assert out == ["2 aliases checked, 0 drifted"]


# -- without a DNS server ---------------------------------------------------------------


async def test_provider_none_records_aliases_and_exports_them(settings: Settings) -> None:
    plain = settings.model_copy(update={"apps_domain": "apps.example.com", "dns_provider": "none"})
    async with serving(plain) as (_, client):
        project = await create_project(client)
        r = await add(client, project["name"], "www.apps.example.com")
        assert r.status_code == 201, r.text
        body = (await client.get("/domains")).json()
        assert body["dns_provider"] == "none"
        [entry] = body["projects"]
        assert entry["canonical"]["domain"] == f"{project['name']}.apps.example.com"
        assert [a["domain"] for a in entry["aliases"]] == ["www.apps.example.com"]
