"""Build callbacks end to end inside one process: outbox → dispatcher → real loopback receivers.

Each test runs on SQLite and PostgreSQL. Builds are finished through the worker protocol
(register, claim, complete) over the real API; the dispatcher is the server's own background
loop. Retry delays are shortened by swapping the service's ``delay`` function.
"""
# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from rdev.api.app import create_app
from rdev.bootstrap import Container, build_container
from rdev.config import Settings
from tests.conftest import ADMIN_TOKEN, make_token
from tests.factories import create_project, register_worker, submit
from tests.fixtures.webhook_receiver import (  # noqa: F401
    deliveries,
    finish_build,
    independent_verify,
    receivers,
    wait_settled,
)

Rdev = tuple[Container, httpx.AsyncClient]


@pytest.fixture
async def rdev(settings: Settings) -> AsyncIterator[Callable[..., Awaitable[Rdev]]]:
    """``await rdev(delay=0.05, background=True, **settings_overrides)`` → (container, client):
    a started server (same database as the test's ``settings``) and an API client on it."""
    made: list[Rdev] = []

    async def make(
        delay: float = 0.05, background: bool = True, migrate: bool = True, **over: Any
    ) -> Rdev:
        c = build_container(settings.model_copy(update=over))
        c.webhooks.delay = lambda _attempt: delay
        await c.start(background=background, migrate=migrate)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(c.settings, container=c)),
            base_url="http://rdev.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        made.append((c, client))
        return c, client

    yield make
    for c, client in reversed(made):
        await client.aclose()
        await c.stop()


async def dispatched_past(client: httpx.AsyncClient, project: dict[str, Any], receivers) -> None:
    """A later delivery goes out and settles: the dispatcher has run past what was due before
    it (instead of sleeping a while and hoping it would have)."""
    marker = await receivers()
    task_id = await finish_build(client, project, marker.url("/marker"))
    await wait_settled(client, task_id, "delivered")


async def test_completed_build_is_delivered_signed_with_the_project_secret(rdev, receivers):
    _, client = await rdev()
    r = await receivers()
    project = await create_project(client)
    secret = project["webhook_secret"]
    assert secret.startswith("whsec_")
    assert "webhook_secret" not in (await client.get(f"/projects/{project['id']}")).json()

    task_id = await finish_build(client, project, r.url("/hooks/rdev?bot=1"))
    delivery = await wait_settled(client, task_id, "delivered")

    [req] = r.requests
    assert req.target == "/hooks/rdev?bot=1"
    assert req.headers["webhook-id"] == delivery["id"]
    assert independent_verify(secret, req.headers, req.body)
    body = json.loads(req.body)
    assert body["type"] == "build.completed"
    assert body["data"]["task_id"] == task_id
    assert body["data"]["status"] == "completed"
    assert body["data"]["result"]["output"] == "ok"
    assert body["data"]["project_name"] == project["name"]
    assert delivery["event"] == "build.completed" and delivery["reason"] is None
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["response_excerpt"] == "answer 1"


async def test_receiver_failing_twice_gets_it_on_the_third_attempt_under_one_id(rdev, receivers):
    _, client = await rdev(delay=0.05)
    r = await receivers(script=[500, 500, 200])
    project = await create_project(client)
    task_id = await finish_build(client, project, r.url())

    delivery = await wait_settled(client, task_id, "delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 200]
    assert [a["error"] for a in delivery["attempts"]][:2] == ["HTTP 500 X", "HTTP 500 X"]
    assert delivery["attempt_count"] == 3
    assert len(r.requests) == 3
    assert {q.headers["webhook-id"] for q in r.requests} == {delivery["id"]}
    assert len({q.body for q in r.requests}) == 1  # the same bytes every time
    assert all(independent_verify(project["webhook_secret"], q.headers, q.body) for q in r.requests)


async def test_exhausted_attempts_leave_a_visible_dead_delivery(rdev, receivers):
    _, client = await rdev(delay=0.05, webhook_max_attempts=3)
    r = await receivers(script=[503])
    project = await create_project(client)
    task_id = await finish_build(client, project, r.url())

    delivery = await wait_settled(client, task_id, "dead")
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 503, 503]
    assert delivery["reason"] == "HTTP 503 X"
    assert delivery["next_attempt_at"] is None
    await dispatched_past(client, project, receivers)
    assert len(r.requests) == 3  # and no fourth


async def test_gone_stops_retrying_at_once(rdev, receivers):
    _, client = await rdev(delay=0.05)
    r = await receivers(script=[410, 200])
    project = await create_project(client)
    task_id = await finish_build(client, project, r.url())

    delivery = await wait_settled(client, task_id, "dead")
    assert [a["status_code"] for a in delivery["attempts"]] == [410]
    await dispatched_past(client, project, receivers)
    assert len(r.requests) == 1


async def test_redirect_to_another_loopback_port_is_not_followed(rdev, receivers):
    _, client = await rdev(webhook_max_attempts=1)
    elsewhere = await receivers()
    r = await receivers(script=[(302, f"Location: {elsewhere.url()}\r\n")])
    project = await create_project(client)
    task_id = await finish_build(client, project, r.url())

    delivery = await wait_settled(client, task_id, "dead")
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 302
    assert "redirects are not followed" in attempt["error"]
    assert elsewhere.connections == 0


async def test_hanging_receiver_does_not_delay_other_deliveries(rdev, receivers):
    # The hanging send's timeout is an hour: the other delivery is surely done while it
    # still hangs, on however slow a machine.
    _, client = await rdev(webhook_timeout_seconds=3600, webhook_max_attempts=1)
    hanging = await receivers(script=["hang"])
    fast = await receivers()
    project = await create_project(client)

    slow_task = await finish_build(client, project, hanging.url())
    await hanging.wait_for(1)
    fast_task = await finish_build(client, project, fast.url())
    assert (await wait_settled(client, fast_task, "delivered"))["attempt_count"] == 1
    assert len(fast.requests) == 1
    [slow] = await deliveries(client, slow_task)
    assert slow["in_flight"] and slow["attempts"] == []  # not queued behind the hanging send


async def test_hanging_receiver_is_cut_at_the_timeout(rdev, receivers):
    _, client = await rdev(webhook_timeout_seconds=1.5, webhook_max_attempts=1)
    hanging = await receivers(script=["hang"])
    project = await create_project(client)

    slow_task = await finish_build(client, project, hanging.url())
    slow = await wait_settled(client, slow_task, "dead")
    [attempt] = slow["attempts"]
    assert attempt["status_code"] is None
    assert attempt["error"] == "timeout after 1.5s"
    assert attempt["latency_ms"] >= 1400  # not before the timeout (later is the load)
    assert len(hanging.requests) == 1


async def test_redeliver_sends_a_dead_delivery_again_under_the_same_id(rdev, receivers):
    _, client = await rdev(delay=0.05)
    r = await receivers(script=[410, 200])
    project = await create_project(client)
    task_id = await finish_build(client, project, r.url())
    dead = await wait_settled(client, task_id, "dead")

    resp = await client.post(f"/deliveries/{dead['id']}/redeliver")
    assert resp.status_code == 202, resp.text
    assert resp.json()["state"] == "pending" and resp.json()["attempt_count"] == 0

    delivered = await wait_settled(client, task_id, "delivered")
    assert [a["status_code"] for a in delivered["attempts"]] == [410, 200]
    assert [q.headers["webhook-id"] for q in r.requests] == [dead["id"], dead["id"]]

    # Redelivering a delivered one sends it once more.
    assert (await client.post(f"/deliveries/{dead['id']}/redeliver")).status_code == 202
    await r.wait_for(3)
    again = await wait_settled(client, task_id, "delivered")
    assert len(again["attempts"]) == 3
    assert (await client.post("/deliveries/msg_nope/redeliver")).status_code == 404


async def test_submit_refuses_loopback_callbacks_without_an_allowlist(rdev, receivers):
    _, client = await rdev(webhook_allowlist=[])
    r = await receivers()
    project = await create_project(client)
    for url in (
        r.url(),
        f"http://[::1]:{r.port}/hook",
        f"http://localhost:{r.port}/hook",
        "http://169.254.169.254/latest/meta-data",
        "ftp://example.com/hook",
        "http://user:pw@example.com/hook",
    ):  # the first four pass the spec's URL syntax check and meet the SSRF guard
        resp = await client.post(
            f"/projects/{project['name']}/builds", json={"prompt": "x", "callback_url": url}
        )
        assert resp.status_code == 422, (url, resp.text)
        problem = resp.json()
        assert problem["errors"][0]["field"].endswith("callback_url"), problem
        assert "callback" in problem["detail"]
        if url.startswith("http://") and "@" not in url:
            assert "callback URL refused" in problem["detail"], problem
            assert "loopback" in problem["detail"] or "link-local" in problem["detail"]
    assert (await client.get("/builds")).json()["items"] == []  # no row written
    assert r.connections == 0


async def test_narrowed_allowlist_refuses_at_send_time_without_connecting(
    rdev, receivers, settings
):
    """Admitted at submit (allowlisted then), refused at send (the operator removed the
    allowlist before the dispatcher ran): nothing connects, and the deliveries say why."""
    _, before = await rdev(background=False)
    v4 = await receivers()
    by_name = await receivers()
    targets = [v4.url(), f"http://localhost:{by_name.port}/hook"]
    listeners = [v4, by_name]
    try:
        v6 = await receivers(host="::1")
        targets.append(v6.url())
        listeners.append(v6)
    except OSError:
        pass  # no IPv6 loopback on this machine
    project = await create_project(before)
    tasks = [await finish_build(before, project, url) for url in targets]

    _, after = await rdev(webhook_allowlist=[])
    for task_id in tasks:
        delivery = await wait_settled(after, task_id, "dead")
        [attempt] = delivery["attempts"]
        assert attempt["status_code"] is None
        assert "loopback" in delivery["reason"] and delivery["reason"].startswith("refused")
    # Settled "dead": each send is over, and it decided before connecting.
    assert [x.connections for x in listeners] == [0] * len(listeners)


async def test_two_dispatchers_never_send_one_delivery_twice(rdev, receivers):
    _, submitter = await rdev(background=False)
    r = await receivers()
    project = await create_project(submitter)
    tasks = [await finish_build(submitter, project, r.url()) for _ in range(12)]

    # Started together (migrations are done: alembic must not run twice at once in-process).
    (first, one), (second, _two) = await asyncio.gather(rdev(migrate=False), rdev(migrate=False))
    await r.wait_for(12)
    for task_id in tasks:
        assert (await wait_settled(one, task_id, "delivered"))["attempt_count"] == 1
    # Every delivery is settled; once neither dispatcher has a send in flight, no second
    # send of any of them can still arrive.
    deadline = time.monotonic() + 60
    while first.webhooks._in_flight or second.webhooks._in_flight:
        assert time.monotonic() < deadline, "a dispatcher kept a send in flight"
        await asyncio.sleep(0.05)
    ids = [q.headers["webhook-id"] for q in r.requests]
    assert len(ids) == len(set(ids)) == 12


async def test_deliveries_need_the_scope_and_the_project(rdev, receivers):
    c, client = await rdev()
    r = await receivers()
    project = await create_project(client)
    other = await create_project(client)
    task_id = await finish_build(client, project, r.url())
    delivery = await wait_settled(client, task_id, "delivered")

    foreign = await make_token(c, ["builds:read", "builds:write"], [other["name"]])
    reader = await make_token(c, ["builds:read"], [project["name"]])
    assert (await client.get(f"/builds/{task_id}/deliveries", headers=foreign)).status_code == 403
    redeliver = f"/deliveries/{delivery['id']}/redeliver"
    assert (await client.post(redeliver, headers=foreign)).status_code == 403
    assert (await client.post(redeliver, headers=reader)).status_code == 403
    assert (await client.get(f"/builds/{task_id}/deliveries", headers=reader)).status_code == 200
    assert (await client.get("/builds/nope/deliveries")).status_code == 404


async def test_build_without_a_callback_has_no_deliveries(rdev):
    _, client = await rdev()
    project = await create_project(client)
    b = await submit(client, project["name"])
    assert await deliveries(client, b["task_id"]) == []


async def test_a_pushed_build_sends_started_pushed_and_completed_in_that_order(rdev, receivers):
    _, client = await rdev()
    r = await receivers()
    project = await create_project(client)
    events = ["build.started", "build.pushed", "build.completed"]
    b = await submit(client, project["name"], callback_url=r.url(), events=events)
    wid = await register_worker(client)
    [task] = (
        await client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 2})
    ).json()
    sha = "a" * 40
    answer = await client.post(
        f"/workers/{wid}/complete",
        json={
            "items": [
                {
                    "task_id": task["task_id"],
                    "lease_token": task["lease_token"],
                    "result": {"success": True, "commit_sha": sha},
                    "agent_info": {"pushed": True, "cli_version": "9.9"},
                }
            ]
        },
    )
    assert answer.json()["items"] == [{"task_id": b["task_id"], "status": "completed"}]
    await r.wait_for(3)
    bodies = sorted((json.loads(q.body) for q in r.requests), key=lambda x: x["timestamp"])
    assert [x["type"] for x in bodies] == events
    assert bodies[1]["data"]["result"]["commit_sha"] == sha
    assert bodies[2]["data"]["status"] == "completed"
    # The worker's agent_info is merged into what the server already knew (the agent).
    build = (await client.get(f"/builds/{b['task_id']}")).json()
    assert build["agent"]["pushed"] is True
    assert build["agent"]["cli_version"] == "9.9"
    assert build["agent"]["agent"] == "command"
