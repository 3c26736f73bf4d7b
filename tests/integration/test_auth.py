"""Every endpoint needs a token with the right scope and, where a project is involved,
a token allowed to touch that project."""

from __future__ import annotations

import re

import pytest

from tests.conftest import make_token
from tests.factories import create_project, register_worker, submit

#: Endpoints anyone may call.
PUBLIC = {
    "/healthz",
    "/readyz",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/metrics",
}
WORKER_PROTOCOL = re.compile(
    r"^/workers/\{worker_id\}/|^/workers/register$|^/builds/\{task_id\}/logs$"
)
ALL_SCOPES = [
    "builds:read",
    "builds:write",
    "projects:read",
    "projects:write",
    "domains:write",
    "workers:run",
]
#: A scope that does NOT grant the endpoint, when the default guess would.
WRONG_SCOPE = {
    ("GET", "/workers"): "projects:read",
    ("GET", "/builds/{task_id}/logs"): "workers:run",
}


def _routes(app) -> list[tuple[str, str]]:
    """Every documented endpoint (from the OpenAPI schema)."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if path in PUBLIC or path.startswith("/ui"):
            continue
        for m in ops:
            if m.upper() in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                out.append((m.upper(), path))
    return sorted(out)


def _wrong_scope(method: str, path: str) -> str:
    if (method, path) in WRONG_SCOPE:
        return WRONG_SCOPE[(method, path)]
    if WORKER_PROTOCOL.search(path) and not (method == "GET" and path.endswith("/logs")):
        return "builds:write"
    return "workers:run"


@pytest.fixture
async def world(client, container):
    p = await create_project(client)
    other = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    return {
        "project_id": p["id"],
        "task_id": b["task_id"],
        "worker_id": wid,
        "other": other["id"],
        "number": "1",
        "domain": "x.apps.localhost",
        "name": "blank",
        "delivery_id": "msg_none",
        "token_id": "none",
    }


def _fill(path: str, world: dict) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: world.get(m.group(1), "x"), path)


async def test_every_endpoint_refuses_without_or_with_a_bad_token(client, world):
    app = client._transport.app  # type: ignore[attr-defined]
    routes = _routes(app)
    assert len(routes) >= 15
    for method, path in routes:
        url = _fill(path, world)
        for headers in ({"Authorization": ""}, {"Authorization": "Bearer nope-not-a-token"}):
            r = await client.request(method, url, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")


async def test_every_endpoint_refuses_a_token_without_its_scope(client, container, world):
    app = client._transport.app  # type: ignore[attr-defined]
    for method, path in _routes(app):
        headers = await make_token(container, [_wrong_scope(method, path)])
        r = await client.request(method, _fill(path, world), headers=headers, json={})
        assert r.status_code == 403, (method, path, r.status_code, r.text)


async def test_project_endpoints_refuse_a_token_for_another_project(client, container, world):
    app = client._transport.app  # type: ignore[attr-defined]
    headers = await make_token(container, ALL_SCOPES, projects=[world["other"]])
    checked = 0
    for method, path in _routes(app):
        if "{project_id}" not in path and "{task_id}" not in path:
            continue
        if WORKER_PROTOCOL.search(path) and not (method == "GET" and path.endswith("/logs")):
            continue  # worker calls are bound by lease tokens, not project lists
        r = await client.request(method, _fill(path, world), headers=headers, json={})
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        checked += 1
    assert checked >= 8


async def test_a_project_limited_token_lists_only_its_projects(client, container, world):
    headers = await make_token(
        container, ["projects:read", "builds:read"], projects=[world["other"]]
    )
    projects = (await client.get("/projects", headers=headers)).json()
    assert [p["id"] for p in projects] == [world["other"]]
    builds = (await client.get("/builds", headers=headers)).json()
    assert builds["items"] == []


async def test_admin_token_is_bootstrapped_and_tokens_are_stored_hashed(client, container):
    r = await client.post("/tokens", json={"name": "bot", "scopes": ["builds:write"]})
    token = r.json()["token"]
    async with container.db.read() as conn:
        import sqlalchemy as sa

        rows = (await conn.execute(sa.text("SELECT * FROM api_tokens"))).all()
    assert token not in repr(rows)
    r = await client.get("/projects", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403  # builds:write does not grant projects:read


async def test_health_needs_no_token(client):
    r = await client.get("/healthz", headers={"Authorization": ""})
    assert r.status_code == 200
