"""Build callbacks with real processes: `rdev serve` subprocesses killed with SIGKILL, a real
`rdev worker`, real loopback receivers in the test. On SQLite and on PostgreSQL.

The servers allowlist 127.0.0.0/8 (the ``RdevServer`` default), so receivers on loopback are
reachable; nothing is sent anywhere else.
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rdev.adapters.db.tables import builds, webhook_deliveries
from tests.factories import create_project
from tests.fixtures.git_server import git_server as git_server_fixture
from tests.fixtures.processes import RdevServer, rdev_server, wait_for_status  # noqa: F401
from tests.fixtures.webhook_receiver import (  # noqa: F401
    deliveries,
    finish_build,
    independent_verify,
    receivers,
    wait_settled,
)

git_server = git_server_fixture
pytestmark = pytest.mark.e2e


async def wait_attempts(api: httpx.AsyncClient, task_id: str, n: int) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # only a failure waits this long
    items: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        items = await deliveries(api, task_id)
        if items and len(items[0]["attempts"]) >= n:
            return items[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {n} attempts: {items}")


def delivery_lease(db_url: str, task_id: str) -> datetime:
    """The lease (``locked_until``) the build's one delivery is held under right now."""
    engine = sa.create_engine(db_url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as conn:
            lease = conn.execute(
                sa.select(webhook_deliveries.c.locked_until)
                .join(builds, builds.c.id == webhook_deliveries.c.build_id)
                .where(builds.c.task_id == task_id)
            ).scalar_one()
    finally:
        engine.dispose()
    assert lease is not None
    return lease  # type: ignore[no-any-return]


async def test_server_killed_before_the_delivery_went_out_delivers_it_after_restart(
    rdev_server, receivers
):
    receiver = await receivers(listening=False)  # port bound, connections refused for now
    async with rdev_server.client() as api:
        project = await create_project(api)
        task_id = await finish_build(api, project, receiver.url())
        first = await wait_attempts(api, task_id, 1)
        assert first["state"] == "pending"
        assert first["attempts"][0]["error"].startswith("connection failed")
        # The retry is due ~5 s later; the server dies (before it, or, on a slow machine,
        # after a second refused attempt: the receiver opens only now).
        rdev_server.kill(signal.SIGKILL)
        await receiver.open()
        await asyncio.to_thread(rdev_server.start)

        [req] = await receiver.wait_for(1)
        assert req.headers["webhook-id"] == first["id"]
        assert independent_verify(project["webhook_secret"], req.headers, req.body)
        assert json.loads(req.body)["data"]["task_id"] == task_id
        done = await wait_settled(api, task_id, "delivered")
    *refused, delivered = done["attempts"]
    assert delivered["status_code"] == 200
    assert refused and all(a["status_code"] is None for a in refused), refused
    assert len(receiver.requests) == 1  # the one sent after the restart
    assert project["webhook_secret"] not in rdev_server.log()


async def test_server_killed_mid_send_resends_after_the_lease_runs_out(db_url, tmp_path, receivers):
    server = RdevServer(
        db_url, tmp_path / "data", tmp_path, RDEV_WEBHOOK_TIMEOUT_SECONDS="2"
    )  # lease = timeout + 5 s margin
    receiver = await receivers(script=["hang", 200])
    try:
        server.start()
        async with server.client() as api:
            project = await create_project(api)
            task_id = await finish_build(api, project, receiver.url())
            await receiver.wait_for(1)  # the POST is in flight, unanswered
            lease = delivery_lease(db_url, task_id)
            server.kill(signal.SIGKILL)
            await asyncio.to_thread(server.start)

            second = (await receiver.wait_for(2))[1]
            # Not before the dead server's lease ran out: no two sends at the same time.
            assert second.wall >= lease.timestamp()
            done = await wait_settled(api, task_id, "delivered")
    finally:
        server.stop_all()
    ids = {q.headers["webhook-id"] for q in receiver.requests}
    assert ids == {done["id"]}
    assert all(
        independent_verify(project["webhook_secret"], q.headers, q.body) for q in receiver.requests
    )
    # The killed attempt died with its process; the one that succeeded is recorded.
    assert [a["status_code"] for a in done["attempts"]] == [200]


async def test_real_worker_build_announces_start_and_completion(rdev_server, git_server, receivers):
    receiver = await receivers()
    name = "wh-" + uuid.uuid4().hex[:8]
    url = git_server.make_repo(name, {"README.md": "hello\n"})
    async with rdev_server.client() as api:
        r = await api.post(
            "/projects", json={"name": name, "repo_url": url, "git_credential": git_server.token}
        )
        assert r.status_code == 201, r.text
        secret = r.json()["webhook_secret"]
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": "echo hi > hello.txt"})
        r = await api.post(
            f"/projects/{name}/builds",
            json={
                "prompt": "say hi",
                "agent": "command",
                "auto_commit": True,
                "callback_url": receiver.url("/bot"),
                "events": ["build.started", "build.completed", "build.failed"],
            },
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        build = await wait_for_status(api, task_id, {"completed", "failed"})
        assert build["status"] == "completed", build
        await receiver.wait_for(2)
        items = await deliveries(api, task_id)

    # Deliveries go out concurrently, so arrival order is not promised: order by timestamp.
    bodies = sorted((json.loads(q.body) for q in receiver.requests), key=lambda b: b["timestamp"])
    assert [b["type"] for b in bodies] == ["build.started", "build.completed"]
    assert bodies[1]["data"]["result"]["files_changed"][0]["path"] == "hello.txt"
    assert all(independent_verify(secret, q.headers, q.body) for q in receiver.requests)
    assert {d["event"] for d in items} == {"build.started", "build.completed"}
    assert len({q.headers["webhook-id"] for q in receiver.requests}) == 2
