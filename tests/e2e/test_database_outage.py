"""A database outage answers 503 problem+json with Retry-After, logs once, changes nothing,
and the server serves again when the database is back (a real ``rdev serve`` whose
PostgreSQL connection runs through a loopback proxy the test cuts)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import drop_pg_schema, make_pg_schema
from tests.fixtures.processes import RdevServer
from tests.fixtures.tcp_proxy import TcpProxy


@pytest.fixture
async def outage_server(tmp_path: Path) -> AsyncIterator[tuple[RdevServer, TcpProxy]]:
    url, schema = make_pg_schema()
    proxy = TcpProxy("127.0.0.1", 5432)
    await proxy.start()
    server = RdevServer(url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/"),
                        tmp_path / "data", tmp_path)  # fmt: skip
    await asyncio.to_thread(server.start)
    try:
        yield server, proxy
    finally:
        await asyncio.to_thread(server.stop_all)
        await proxy.stop()
        drop_pg_schema(schema)


async def until_status(api: httpx.AsyncClient, path: str, status: int) -> httpx.Response:
    """The first answer to ``path`` with ``status`` (a pooled connection that died with the
    outage may fail one more request; only a failure waits the full minute)."""
    deadline = time.monotonic() + 60
    while True:
        r = await api.get(path)
        if r.status_code == status or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


async def test_database_outage_answers_503_logs_once_changes_nothing_and_recovers(
    outage_server: tuple[RdevServer, TcpProxy],
) -> None:
    server, proxy = outage_server
    async with server.client() as api:
        assert (await api.get("/projects")).status_code == 200
        ready = await api.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text

        proxy.cut()
        down = await until_status(api, "/projects", 503)
        writes = [
            await api.post("/projects", json={"name": f"during-{i}", "repo_url": "file:///x.git"})
            for i in range(20)
        ]
        live = await api.get("/healthz")
        not_ready = await api.get("/readyz")

        proxy.restore()
        back = await until_status(api, "/projects", 200)
        ready_again = await until_status(api, "/readyz", 200)

    assert down.status_code == 503, down.text
    assert down.headers["content-type"].startswith("application/problem+json")
    assert down.headers["retry-after"] == "2"
    assert down.json()["type"].endswith("/database-unavailable")
    assert [w.status_code for w in writes] == [503] * 20
    assert live.status_code == 200  # liveness never asks the database
    assert not_ready.status_code == 503 and not_ready.headers["retry-after"] == "2"
    assert back.status_code == 200 and ready_again.status_code == 200
    assert not [p for p in back.json() if p["name"].startswith("during-")]  # nothing stored
    log = server.log()
    assert log.count('"database unavailable"') == 1, log[-4000:]
    assert log.count('"database reachable again"') == 1
    assert "Traceback" not in log and "unhandled error" not in log
