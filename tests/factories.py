"""Small factories for test data through the public API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx


async def create_project(client: httpx.AsyncClient, **over: Any) -> dict[str, Any]:
    body = {"name": "p-" + uuid.uuid4().hex[:8], "repo_url": "file:///tmp/none.git"}
    body.update(over)
    r = await client.post("/projects", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def create_woodpecker_project(
    client: httpx.AsyncClient, server_url: str, repo: str, token: str
) -> dict[str, Any]:
    """A project whose CI is the Woodpecker at ``server_url`` (``repo`` = owner/name)."""
    p = await create_project(client)
    ci = {"provider": "woodpecker", "server_url": server_url, "repo": repo, "token": token}
    r = await client.patch(f"/projects/{p['id']}", json={"ci": ci})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def submit(client: httpx.AsyncClient, project: str, **spec: Any) -> dict[str, Any]:
    body = {"prompt": "do the thing", "agent": "command"}
    body.update(spec)
    r = await client.post(f"/projects/{project}/builds", json=body)
    assert r.status_code == 202, r.text
    return r.json()  # type: ignore[no-any-return]


async def register_worker(client: httpx.AsyncClient, name: str | None = None, **over: Any) -> str:
    body = {"name": name or "w-" + uuid.uuid4().hex[:8], "agents": ["command"], "slots": 4}
    body.update(over)
    r = await client.post("/workers/register", json=body)
    assert r.status_code == 200, r.text
    return r.json()["worker_id"]  # type: ignore[no-any-return]
