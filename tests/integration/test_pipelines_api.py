"""GET /projects/{id}/pipelines[/{number}] and the CI linker, against a fake Woodpecker that
holds every request and response to Woodpecker's own spec. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rdev.adapters.db.ci_links import SqlCILinkStore
from rdev.domain.ci_links import CILinkState
from rdev.ports.ci_links import LinkOutcome
from tests.conftest import make_token
from tests.factories import create_project, create_woodpecker_project, register_worker, submit
from tests.fixtures.fake_woodpecker import FakeWoodpecker, running_fake_woodpecker
from tests.fixtures.webhook_receiver import (
    receivers,  # noqa: F401  (pytest fixture)
    wait_settled,
)

REPO = "acme/shop"


def sha(n: int | str) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


@pytest.fixture
def settings(settings):  # noqa: F811 - conftest's, with a fast CI linker
    return settings.model_copy(update={"ci_poll_interval_seconds": 0.1})


@pytest.fixture
def fake() -> Iterator[FakeWoodpecker]:
    with running_fake_woodpecker() as f:
        f.add_repo(REPO)
        yield f


async def ci_project(
    client, fake: FakeWoodpecker, *, token: str | None = None, repo: str = REPO
) -> dict[str, Any]:
    return await create_woodpecker_project(client, fake.url, repo, token or fake.token)


# -- the proxy ---------------------------------------------------------------------------------


async def test_list_pipelines_is_normalized_filtered_and_paged(client, fake):
    for n in range(1, 8):
        fake.add_pipeline(
            REPO,
            sha(n),
            "main" if n % 2 else "dev",
            "success" if n < 7 else "running",
            event="push" if n != 4 else "tag",
        )
    fake.add_pipeline(REPO, sha(8), "main", "killed")
    fake.add_pipeline(REPO, sha(9), "main", "canceled")
    p = await ci_project(client, fake)

    r = await client.get(f"/projects/{p['id']}/pipelines")
    assert r.status_code == 200, r.text
    items = r.json()
    assert [i["number"] for i in items] == [9, 8, 7, 6, 5, 4, 3, 2, 1]
    seven = items[2]
    assert seven["status"] == "running" and seven["raw_status"] == "running"
    assert seven["commit_sha"] == sha(7)
    assert seven["branch"] == "main" and seven["event"] == "push"
    assert seven["created_at"].endswith("Z") and seven["finished_at"] is None
    assert seven["url"].startswith(fake.url) and seven["url"].endswith("/pipeline/7")
    assert seven["workflows"] == []
    assert items[0]["status"] == "cancelled" and items[0]["raw_status"] == "canceled"

    pages = []
    for page in (1, 2, 3, 4):
        r = await client.get(f"/projects/{p['id']}/pipelines", params={"page": page, "per_page": 3})
        assert r.status_code == 200, r.text
        pages.append([i["number"] for i in r.json()])
    assert pages == [[9, 8, 7], [6, 5, 4], [3, 2, 1], []]

    r = await client.get(f"/projects/{p['id']}/pipelines", params={"branch": "dev"})
    assert [i["number"] for i in r.json()] == [6, 4, 2]
    r = await client.get(f"/projects/{p['id']}/pipelines", params={"event": "tag"})
    assert [i["number"] for i in r.json()] == [4]
    r = await client.get(f"/projects/{p['id']}/pipelines", params={"status": "cancelled"})
    assert [i["number"] for i in r.json()] == [9, 8]
    r = await client.get(
        f"/projects/{p['id']}/pipelines",
        params={"status": "success", "branch": "main", "per_page": 2},
    )
    assert [i["number"] for i in r.json()] == [5, 3]

    r = await client.get(f"/projects/{p['id']}/pipelines", params={"status": "greenish"})
    assert r.status_code == 422 and r.json()["field"] == "status"
    r = await client.get(f"/projects/{p['id']}/pipelines", params={"per_page": 101})
    assert r.status_code == 422 and r.json()["field"] == "per_page"


async def test_get_pipeline_by_number_and_latest_has_workflows_and_steps(client, fake):
    one = fake.add_pipeline(REPO, sha(1), "main", "running", steps=["clone", "test", "lint"])
    fake.set_status(
        REPO,
        one.number,
        "failure",
        steps={"clone": "success", "test": "failure", "lint": "skipped"},
    )
    fake.add_pipeline(REPO, sha(2), "main", "pending", steps=["clone"])
    fake.add_pipeline(REPO, sha(3), "feature", "running")
    p = await ci_project(client, fake)

    r = await client.get(f"/projects/{p['id']}/pipelines/1")
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["number"], got["status"], got["commit_sha"]) == (1, "failure", sha(1))
    assert got["finished_at"].endswith("Z")
    [wf] = got["workflows"]
    assert [(s["name"], s["state"]) for s in wf["steps"]] == [
        ("clone", "success"),
        ("test", "failure"),
        ("lint", "skipped"),
    ]
    assert wf["steps"][1]["exit_code"] == 1

    latest = await client.get(f"/projects/{p['name']}/pipelines/latest")
    assert latest.status_code == 200, latest.text
    assert latest.json()["number"] == 2  # newest on the default branch, not #3 on 'feature'
    assert latest.json()["status"] == "pending" and latest.json()["started_at"] is None

    r = await client.get(f"/projects/{p['id']}/pipelines/999")
    assert r.status_code == 404
    r = await client.get(f"/projects/{p['id']}/pipelines/-3")
    assert r.status_code == 422 and r.json()["field"] == "number"


async def test_rejected_ci_token_is_502_without_the_token(client, fake):
    p = await ci_project(client, fake, token="wp-wrong-token-123456")
    r = await client.get(f"/projects/{p['id']}/pipelines")
    assert r.status_code == 502
    assert r.json()["type"].endswith("/upstream-failed")
    assert "CI token rejected" in r.json()["detail"]
    assert "wp-wrong-token-123456" not in r.text
    assert "Unauthorized" not in r.text  # Woodpecker's own body is not passed on
    r = await client.get(f"/projects/{p['id']}/pipelines/latest")
    assert r.status_code == 502


async def test_unknown_or_unreadable_ci_repo_is_404(client, fake):
    p = await ci_project(client, fake, repo="acme/missing")
    r = await client.get(f"/projects/{p['id']}/pipelines")
    assert r.status_code == 404
    assert "acme/missing" in r.json()["detail"]
    fake.add_repo("acme/secret", readable=False)
    p2 = await ci_project(client, fake, repo="acme/secret")
    assert (await client.get(f"/projects/{p2['id']}/pipelines/1")).status_code == 404


async def test_slow_ci_server_is_504(client, container, fake):
    container.pipelines.http_timeout = 0.3
    p = await ci_project(client, fake)
    fake.delay = 30.0  # however starved this loop, the answer cannot beat the timeout
    r = await client.get(f"/projects/{p['id']}/pipelines")
    assert r.status_code == 504, r.text  # the 0.3 s timeout, not the 30 s answer
    assert r.json()["type"].endswith("/upstream-timeout")
    fake.delay = 0


async def test_ci_server_errors_are_502_without_their_body(client, fake):
    p = await ci_project(client, fake)
    fake.fail_next(500, "panic: secret internals")
    r = await client.get(f"/projects/{p['id']}/pipelines")
    assert r.status_code == 502
    assert "secret internals" not in r.text


async def test_project_without_ci_is_409_with_a_hint(client):
    p = await create_project(client)
    for path in ("pipelines", "pipelines/1", "pipelines/latest"):
        r = await client.get(f"/projects/{p['id']}/{path}")
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["type"].endswith("/ci-not-configured")
        assert "PATCH /projects/{id}" in body["detail"] and "ci" in body["hint"]


async def test_pipelines_need_a_read_scope_on_that_project(client, container, fake):
    fake.add_pipeline(REPO, sha(1))
    p = await ci_project(client, fake)
    other = await create_project(client)
    for scopes in (["builds:read"], ["projects:read"]):
        h = await make_token(container, scopes, [p["name"]])
        assert (await client.get(f"/projects/{p['id']}/pipelines", headers=h)).status_code == 200
    h = await make_token(container, ["workers:run"])
    assert (await client.get(f"/projects/{p['id']}/pipelines", headers=h)).status_code == 403
    h = await make_token(container, ["builds:read"], [other["name"]])
    assert (await client.get(f"/projects/{p['id']}/pipelines/1", headers=h)).status_code == 403
    assert (
        await client.get(f"/projects/{p['id']}/pipelines", headers={"Authorization": "Bearer nope"})
    ).status_code == 401


# -- the linker --------------------------------------------------------------------------------


async def complete_pushed_build(
    client, project: str, commit: str, *, pushed: bool = True, **spec: Any
) -> str:
    """Run a build through the worker protocol: it completes with ``commit`` pushed."""
    b = await submit(client, project, auto_commit=True, auto_push=True, **spec)
    wid = await register_worker(client)
    r = await client.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 2})
    [task] = r.json()
    r = await client.post(
        f"/workers/{wid}/complete/{task['task_id']}",
        json={
            "lease_token": task["lease_token"],
            "result": {"success": True, "output": "done", "commit_sha": commit},
            "agent_info": {"pushed": pushed, "base_commit": sha("base")},
        },
    )
    assert r.status_code == 200, r.text
    return b["task_id"]


async def wait_ci(client, task_id: str, pred, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the build's ``ci`` until ``pred`` holds (only a failure waits ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    ci = None
    while time.monotonic() < deadline:
        ci = (await client.get(f"/builds/{task_id}")).json()["ci"]
        if ci and pred(ci):
            return ci
        await asyncio.sleep(0.05)
    raise AssertionError(f"build {task_id} ci never matched: {ci}")


async def test_linker_follows_the_pushed_commit_to_a_failed_pipeline_and_calls_back(
    client,
    container,
    fake,
    receivers,  # noqa: F811
):
    receiver = await receivers(script=[200])
    p = await ci_project(client, fake)
    commit = sha("pushed")
    fake.add_pipeline(REPO, sha("older"), "main", "success")
    task_id = await complete_pushed_build(
        client,
        p["name"],
        commit,
        callback_url=receiver.url("/ci"),
        events=["build.ci_passed", "build.ci_failed"],
    )
    ci = await wait_ci(client, task_id, lambda c: True)
    assert ci["provider"] == "woodpecker" and ci["status"] == "searching"
    assert ci["pipeline_number"] is None

    pipe = fake.add_pipeline(REPO, commit, "main", "pending", steps=["clone", "test"])
    ci = await wait_ci(client, task_id, lambda c: c["status"] == "pending")
    assert ci["pipeline_number"] == pipe.number
    assert ci["url"].endswith(f"/pipeline/{pipe.number}")
    fake.set_status(REPO, pipe.number, "running", steps={"clone": "success"})
    await wait_ci(client, task_id, lambda c: c["status"] == "running")
    assert receiver.requests == []  # nothing asked for until the end
    fake.set_status(REPO, pipe.number, "failure", steps={"test": "failure"})
    ci = await wait_ci(client, task_id, lambda c: c["status"] == "failure")
    assert ci["raw_status"] == "failure"
    assert ci["failed_steps"] == ["test"]

    [req] = await receiver.wait_for(1)
    body = json.loads(req.body)
    assert body["type"] == "build.ci_failed"
    assert body["data"]["ci"]["failed_steps"] == ["test"]
    assert body["data"]["ci"]["pipeline_number"] == pipe.number
    build = (await client.get(f"/builds/{task_id}")).json()
    assert build["status"] == "completed"  # CI never changes the build's own status
    # One event, not one per poll: the link is done (never checked again), and its one
    # delivery went out once.
    delivery = await wait_settled(client, task_id, "delivered")
    assert (delivery["event"], delivery["attempt_count"]) == ("build.ci_failed", 1)
    async with container.db.read() as conn:
        states = (await conn.execute(sa.text("SELECT state FROM ci_links"))).scalars().all()
    assert states == ["done"]
    assert len(receiver.requests) == 1


async def test_linker_passes_a_green_pipeline_and_queues_ci_passed(client, container, fake):
    p = await ci_project(client, fake)
    commit = sha("green")
    fake.add_pipeline(REPO, commit, "main", "success", steps=["test"])
    task_id = await complete_pushed_build(
        client,
        p["name"],
        commit,
        callback_url="http://127.0.0.1:9/hook",
        events=["build.ci_passed"],
    )
    ci = await wait_ci(client, task_id, lambda c: c["status"] == "success")
    assert ci["failed_steps"] == []
    async with container.db.read() as conn:
        events = (
            (
                await conn.execute(
                    sa.text(
                        "SELECT d.event FROM webhook_deliveries d "
                        "JOIN builds b ON b.id = d.build_id WHERE b.task_id = :t"
                    ),
                    {"t": task_id},
                )
            )
            .scalars()
            .all()
        )
    assert events == ["build.ci_passed"]


async def test_linker_gives_up_at_the_deadline(client, container, fake):
    container.ci_linker.link_timeout = 0.6
    p = await ci_project(client, fake)
    task_id = await complete_pushed_build(
        client,
        p["name"],
        sha("never-built"),
        callback_url="http://127.0.0.1:9/hook",
        events=["build.ci_passed", "build.ci_failed"],
    )
    ci = await wait_ci(client, task_id, lambda c: c["status"] == "unknown")
    assert "deadline" in ci["reason"]

    stuck = sha("stuck")
    fake.add_pipeline(REPO, stuck, "main", "running")
    task2 = await complete_pushed_build(client, p["name"], stuck)
    ci = await wait_ci(client, task2, lambda c: c["status"] == "timeout")
    assert ci["pipeline_number"] is not None and ci["raw_status"] == "running"
    async with container.db.read() as conn:
        n = (
            await conn.execute(
                sa.text("SELECT count(*) FROM webhook_deliveries WHERE event LIKE 'build.ci_%'")
            )
        ).scalar()
        states = (await conn.execute(sa.text("SELECT state FROM ci_links"))).scalars().all()
    assert n == 0
    assert sorted(states) == ["gave_up", "gave_up"]


async def test_linker_retries_ci_errors_until_the_deadline(client, container, fake):
    # The background loop is stopped; each pass is run by hand and the link's due time and
    # deadline are moved in the database, so no wall-clock pacing decides the outcome.
    await stop_the_linker(container)
    p = await ci_project(client, fake, token="wp-rejected-token-98765")
    task_id = await complete_pushed_build(client, p["name"], sha("rejected"))

    def lookups() -> int:
        return sum(1 for _, path, _ in fake.requests if path.startswith("/api/repos/lookup"))

    for n in range(1, 4):
        await make_link_due(container)
        assert await container.ci_linker.check_due() == 1
        assert lookups() == n  # retried on every pass while the deadline is ahead
        ci = (await client.get(f"/builds/{task_id}")).json()["ci"]
        assert ci["status"] == "searching" and "CI token rejected" in ci["error"]

    await make_link_due(container, past_deadline=True)
    assert await container.ci_linker.check_due() == 1
    ci = (await client.get(f"/builds/{task_id}")).json()["ci"]
    assert ci["status"] == "unknown"
    assert "wp-rejected-token-98765" not in str(ci)
    await make_link_due(container)
    assert await container.ci_linker.check_due() == 0  # given up: never checked again


async def stop_the_linker(container) -> None:
    """Stop the background CI linker and wait until its loop has ended."""
    container.ci_linker.poll_interval = 3600
    container.stop_event.set()
    [linker] = [t for t in container.background if t.get_name() == "rdev-ci-linker"]
    await asyncio.wait_for(linker, 60)


async def make_link_due(container, *, past_deadline: bool = False) -> None:
    from datetime import UTC, datetime

    from rdev.adapters.db.tables import ci_links

    now = datetime.now(UTC)
    values: dict[str, Any] = {"next_check_at": now - timedelta(seconds=1)}
    if past_deadline:
        values["deadline_at"] = now - timedelta(seconds=1)
    async with container.db.write() as conn:
        await conn.execute(sa.update(ci_links).values(**values))


async def test_no_link_without_push_or_without_ci(client, container, fake):
    p = await ci_project(client, fake)
    plain = await create_project(client)
    t1 = await complete_pushed_build(client, p["name"], sha("local"), pushed=False)
    t2 = await complete_pushed_build(client, plain["name"], sha("no-ci"))
    # The completion hook runs inside the completion: a pushed build with CI is linked by
    # the time its completion answered (so the two above would be, too, nothing to wait for).
    t3 = await complete_pushed_build(client, p["name"], sha("linked"))
    assert (await client.get(f"/builds/{t3}")).json()["ci"]["commit_sha"] == sha("linked")
    for t in (t1, t2):
        assert (await client.get(f"/builds/{t}")).json()["ci"] is None
    async with container.db.read() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM ci_links"))).scalar() == 1


async def test_a_leased_link_is_not_claimed_twice(client, container, fake):
    await stop_the_linker(container)  # keep the background loop out of the way
    p = await ci_project(client, fake)
    await complete_pushed_build(client, p["name"], sha("lease"))
    a, b = SqlCILinkStore(container.db), SqlCILinkStore(container.db)
    first = await a.claim_due(lease_seconds=30)
    second = await b.claim_due(lease_seconds=30)
    assert len(first) == 1 and second == []
    # A linker that lost its lease writes nothing.
    lost = dataclasses.replace(first[0], lease=first[0].lease - timedelta(seconds=1))
    done = LinkOutcome(CILinkState.DONE, first[0].ci, first[0].lease, 0)
    assert await a.record(lost, done) is False
    assert await a.record(first[0], done) is True


# -- the token stays secret --------------------------------------------------------------------


async def _all_rows(container) -> list[tuple[str, str, Any]]:
    """(table, column, value) of every cell of every table in the database."""

    def tables(sync_conn: Any) -> list[str]:
        return sa.inspect(sync_conn).get_table_names()

    out = []
    async with container.db.read() as conn:
        for table in await conn.run_sync(tables):
            res = await conn.execute(sa.text(f'SELECT * FROM "{table}"'))
            cols = list(res.keys())
            for row in res.all():
                out += [(table, c, v) for c, v in zip(cols, row, strict=True)]
    return out


async def test_ci_token_is_in_no_response_log_line_or_other_column(
    client, container, fake, caplog, capfd
):
    # Everything of ours down to DEBUG, libraries at INFO: aiosqlite's DEBUG lines echo every
    # SQL parameter (any column value), which is why the server never runs libraries at DEBUG.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="rdev")
    token = fake.token
    p = await ci_project(client, fake)
    commit = sha("leak")
    pipe = fake.add_pipeline(REPO, commit, "main", "running", steps=["test"])
    task_id = await complete_pushed_build(client, p["name"], commit)
    await wait_ci(client, task_id, lambda c: c["status"] == "running")
    fake.set_status(REPO, pipe.number, "failure", steps={"test": "failure"})
    await wait_ci(client, task_id, lambda c: c["status"] == "failure")

    texts = []
    for path in (
        "/projects",
        f"/projects/{p['id']}",
        f"/projects/{p['id']}/pipelines",
        f"/projects/{p['id']}/pipelines/latest",
        f"/builds/{task_id}",
        "/builds",
        f"/builds/{task_id}/events",
        "/openapi.json",
    ):
        r = await client.get(path)
        assert r.status_code == 200, (path, r.text)
        texts.append(r.text)
    fake.fail_next(401, f"bad token {token}")
    texts.append((await client.get(f"/projects/{p['id']}/pipelines")).text)
    fake.fail_next(500, f"boom {token}")
    texts.append((await client.get(f"/projects/{p['id']}/pipelines/1")).text)
    patched = await client.patch(
        f"/projects/{p['id']}",
        json={
            "ci": {"provider": "woodpecker", "server_url": "ftp://x", "repo": REPO, "token": token}
        },
    )
    assert patched.status_code == 422
    texts.append(patched.text)
    for text in texts:
        assert token not in text

    out, err = capfd.readouterr()
    assert token not in caplog.text
    assert token not in out and token not in err
    holders = {(t, c) for t, c, v in await _all_rows(container) if token in str(v)}
    assert holders == {("projects", "ci_token")}
