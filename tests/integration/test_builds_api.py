"""Build API and worker protocol through HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from tests.factories import create_project, register_worker, submit


async def _claim(client, wid, n=1, wait=2.0):
    r = await client.post(f"/workers/{wid}/claim", json={"max_tasks": n, "wait_seconds": wait})
    assert r.status_code == 200, r.text
    return r.json()


async def _complete(client, wid, task, **result):
    return await client.post(
        f"/workers/{wid}/complete/{task['task_id']}",
        json={"lease_token": task["lease_token"], "result": {"success": True, **result}},
    )


async def _count_rows(container) -> dict[str, int]:
    async with container.db.read() as conn:
        return {
            t: (await conn.execute(sa.text(f"SELECT count(*) FROM {t}"))).scalar_one()
            for t in ("builds", "work_tasks", "build_events")
        }


async def test_submit_returns_202_pending_with_links(client):
    p = await create_project(client)
    r = await client.post(f"/projects/{p['name']}/builds", json={"prompt": "x"})
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "pending"
    assert body["links"]["self"] == f"/builds/{body['task_id']}"
    got = (await client.get(body["links"]["self"])).json()
    assert got["spec"]["branch"] == "main"
    assert got["spec"]["agent"] == "command"  # server default


async def test_idempotency_key_returns_the_first_build(client, container):
    p = await create_project(client)
    headers = {"Idempotency-Key": "abc-123"}
    r1 = await client.post(f"/projects/{p['id']}/builds", json={"prompt": "x"}, headers=headers)
    r2 = await client.post(f"/projects/{p['id']}/builds", json={"prompt": "x"}, headers=headers)
    assert r1.status_code == r2.status_code == 202
    assert r1.json()["task_id"] == r2.json()["task_id"]
    assert (await _count_rows(container))["builds"] == 1


async def test_concurrent_idempotent_submits_make_one_build(client, container):
    p = await create_project(client)
    rs = await asyncio.gather(
        *(
            client.post(
                f"/projects/{p['id']}/builds",
                json={"prompt": "x"},
                headers={"Idempotency-Key": "same"},
            )
            for _ in range(5)
        )
    )
    assert {r.status_code for r in rs} == {202}
    assert len({r.json()["task_id"] for r in rs}) == 1
    assert (await _count_rows(container))["builds"] == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x", "auto_push": True}, "auto_push"),
        ({"prompt": "x", "callback_url": "ftp://example.org/x"}, "callback_url"),
        ({"prompt": "x", "callback_url": "not a url"}, "callback_url"),
        ({"prompt": "x", "agent": "gpt-pilot"}, "agent"),
        ({"prompt": 42}, "prompt"),
        ({"prompt": "x", "auto_commit": "maybe"}, "auto_commit"),
        ({"prompt": "x", "variables": []}, "variables"),
        ({"prompt": "x", "timeout_seconds": -1}, "timeout_seconds"),
        ({"prompt": "x", "labels": "gpu"}, "labels"),
        ({"prompt": "x", "surprise": 1}, "surprise"),
    ],
)
async def test_invalid_spec_is_422_naming_the_field_and_writes_nothing(
    client, container, body, field
):
    p = await create_project(client)
    before = await _count_rows(container)
    r = await client.post(f"/projects/{p['id']}/builds", json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("validation-error")
    assert field in problem["field"] or any(field in e["field"] for e in problem["errors"])
    assert await _count_rows(container) == before


async def test_malformed_json_is_a_problem_not_a_crash(client):
    p = await create_project(client)
    r = await client.post(
        f"/projects/{p['id']}/builds",
        content=b"{nope",
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "Traceback" not in r.text


async def test_unknown_ids_are_404_problems(client):
    for path in ("/builds/nope", "/projects/nope", "/builds/nope/events"):
        r = await client.get(path)
        assert r.status_code == 404
        assert r.json()["type"].endswith("not-found")


async def test_list_is_newest_first_with_keyset_pagination_and_status_filter(client):
    p = await create_project(client)
    ids = [(await submit(client, p["name"], prompt=f"b{i}"))["task_id"] for i in range(5)]
    await client.post(f"/builds/{ids[1]}/cancel")
    page1 = (await client.get(f"/projects/{p['name']}/builds", params={"limit": 2})).json()
    assert [b["task_id"] for b in page1["items"]] == ids[::-1][:2]
    page2 = (
        await client.get(
            f"/projects/{p['name']}/builds", params={"limit": 2, "cursor": page1["next_cursor"]}
        )
    ).json()
    assert [b["task_id"] for b in page2["items"]] == ids[::-1][2:4]
    page3 = (
        await client.get(
            f"/projects/{p['name']}/builds", params={"limit": 2, "cursor": page2["next_cursor"]}
        )
    ).json()
    assert [b["task_id"] for b in page3["items"]] == [ids[0]]
    assert page3["next_cursor"] is None
    cancelled = (
        await client.get(f"/projects/{p['name']}/builds", params={"status": "cancelled"})
    ).json()
    assert [b["task_id"] for b in cancelled["items"]] == [ids[1]]


async def test_cancel_pending_is_immediate_and_never_claimed(client):
    p = await create_project(client)
    b = await submit(client, p["name"])
    r = await client.post(f"/builds/{b['task_id']}/cancel")
    assert r.json()["status"] == "cancelled"
    wid = await register_worker(client)
    assert await _claim(client, wid, wait=0.2) == []
    events = (await client.get(f"/builds/{b['task_id']}/events")).json()
    assert [(e["from"], e["to"]) for e in events] == [(None, "pending"), ("pending", "cancelled")]


async def test_cancel_running_is_handed_to_the_worker_and_ends_cancelled(client):
    p = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    [task] = await _claim(client, wid)
    r = await client.post(f"/builds/{b['task_id']}/cancel")
    assert r.json()["status"] == "running" and r.json()["cancel_requested"] is True
    hb = await client.post(
        f"/workers/{wid}/heartbeat",
        json={"tasks": [{"task_id": task["task_id"], "lease_token": task["lease_token"]}]},
    )
    assert hb.json()["cancel"] == [b["task_id"]]
    r = await _complete(client, wid, task, success=False, cancelled=True, error="cancelled")
    assert r.json()["status"] == "cancelled"
    assert (await client.get(f"/builds/{b['task_id']}")).json()["status"] == "cancelled"


async def test_illegal_transitions_are_refused_with_409(client):
    p = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    [task] = await _claim(client, wid)
    assert (await _complete(client, wid, task)).status_code == 200
    # completed -> cancelled, completed -> completed (again) are refused
    r = await client.post(f"/builds/{b['task_id']}/cancel")
    assert r.status_code == 409 and r.json()["type"].endswith("illegal-transition")
    r = await _complete(client, wid, task, output="again")
    assert r.status_code == 409
    got = (await client.get(f"/builds/{b['task_id']}")).json()
    assert got["status"] == "completed" and got["result"]["output"] == ""


async def test_expired_lease_is_reclaimed_and_the_first_workers_result_is_refused(
    settings, tmp_path
):
    import httpx

    from rdev.api.app import create_app
    from rdev.bootstrap import build_container
    from tests.conftest import ADMIN_TOKEN, run_out_lease_clock

    c = build_container(settings)
    await c.start(background=False)  # the reaper is driven by hand below
    try:
        app = create_app(c.settings, container=c)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as cl:
            p = await create_project(cl)
            b = await submit(cl, p["name"])
            w1 = await register_worker(cl, "one")
            w2 = await register_worker(cl, "two")
            [t1] = await _claim(cl, w1)
            await run_out_lease_clock(c, t1["task_id"])
            assert await c.queue.reap_expired() == 1
            [t2] = await _claim(cl, w2)
            assert t2["task_id"] == b["task_id"] and t2["lease_token"] != t1["lease_token"]
            assert t2["attempt"] == 2
            stale = await _complete(cl, w1, t1, output="from one")
            assert stale.status_code == 409
            assert stale.json()["type"].endswith("stale-lease")
            log = await cl.post(
                f"/builds/{b['task_id']}/logs",
                json={"lease_token": t1["lease_token"], "chunks": [{"text": "late"}]},
            )
            assert log.status_code == 409
            hb = await cl.post(
                f"/workers/{w1}/heartbeat",
                json={"tasks": [{"task_id": t1["task_id"], "lease_token": t1["lease_token"]}]},
            )
            assert hb.status_code == 409 and hb.json()["lost_tasks"] == [b["task_id"]]
            assert (await _complete(cl, w2, t2, output="from two")).status_code == 200
            got = (await cl.get(f"/builds/{b['task_id']}")).json()
            assert got["status"] == "completed" and got["result"]["output"] == "from two"
            assert (await cl.get(f"/builds/{b['task_id']}/logs")).json()["chunks"] == []
    finally:
        await c.stop()


async def test_lease_expiry_after_max_attempts_fails_with_worker_lost(settings):
    from rdev.bootstrap import build_container
    from rdev.domain.models import BuildSpec

    c = build_container(settings.model_copy(update={"lease_seconds": 0.2, "max_attempts": 1}))
    await c.start()
    try:
        proj = await c.projects.store.create(
            name="x", repo_url="file:///x", default_branch="main", git_credential=None
        )
        b, _ = await c.builds.builds.submit(
            project_id=proj.id,
            spec=BuildSpec(prompt="x", agent="command"),
            agent="command",
            labels=[],
            rendered_prompt="x",
            template_name=None,
            template_version=None,
            max_attempts=1,
            idempotency_key=None,
            actor="t",
        )
        await c.queue.claim(
            worker_id="w",
            worker_name="w",
            agents=["command"],
            labels=[],
            max_tasks=1,
            lease_seconds=0.2,
        )
        deadline = asyncio.get_running_loop().time() + 60  # only a failure waits this long
        while (got := await c.builds.builds.get(b.task_id)).status != "failed":
            assert asyncio.get_running_loop().time() < deadline, got
            await asyncio.sleep(0.1)
        assert got.result.error == "worker lost"
    finally:
        await c.stop()


async def test_pending_build_says_why_it_waits(client):
    p = await create_project(client)
    b = await submit(client, p["name"], agent="opencode")
    got = (await client.get(f"/builds/{b['task_id']}")).json()
    assert got["pending_reason"] == "no worker is online"
    await register_worker(client, agents=["command"])
    got = (await client.get(f"/builds/{b['task_id']}")).json()
    assert got["pending_reason"] == "no online worker offers agent opencode"


async def test_workers_list_shows_online_state(client):
    await register_worker(client, "alpha")
    workers = (await client.get("/workers")).json()
    assert [(w["name"], w["online"]) for w in workers] == [("alpha", True)]


async def test_register_is_idempotent_by_name(client):
    a = await register_worker(client, "same")
    b = await register_worker(client, "same", slots=8)
    assert a == b
    [w] = (await client.get("/workers")).json()
    assert w["slots"] == 8


async def test_a_resent_log_batch_is_stored_once(client):
    p = await create_project(client)
    b = await submit(client, p["name"])
    wid = await register_worker(client)
    [task] = await _claim(client, wid)
    url = f"/builds/{b['task_id']}/logs"
    first = {
        "lease_token": task["lease_token"],
        "offset": 0,
        "chunks": [{"text": "one"}, {"text": "two"}],
    }
    assert (await client.post(url, json=first)).status_code == 200
    assert (await client.post(url, json=first)).status_code == 200  # answer was "lost"
    overlap = {
        "lease_token": task["lease_token"],
        "offset": 1,
        "chunks": [{"text": "two"}, {"text": "three"}],
    }
    assert (await client.post(url, json=overlap)).status_code == 200
    stored = (await client.get(url)).json()["chunks"]
    assert [(c["seq"], c["text"]) for c in stored] == [(1, "one"), (2, "two"), (3, "three")]
