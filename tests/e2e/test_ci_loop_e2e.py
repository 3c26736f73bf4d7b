"""The CI loop end to end: a real `rdev serve` and `rdev worker` push a commit to a real git
server; a fake Woodpecker (spec-checked) runs a pipeline for that commit, pending → running →
failure; the build shows the pipeline and its failed step, and the build's callback receiver
gets ``build.ci_failed``. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.fixtures.fake_woodpecker import FakeWoodpecker, running_fake_woodpecker
from tests.fixtures.git_server import git_server as git_server_fixture
from tests.fixtures.processes import RdevServer, wait_for_status
from tests.fixtures.webhook_receiver import independent_verify
from tests.fixtures.webhook_receiver import receivers as receivers_fixture

git_server = git_server_fixture
receivers = receivers_fixture
pytestmark = pytest.mark.e2e
CI_REPO = "acme/e2e"


@pytest.fixture
def ci_server(db_url: str, tmp_path: Path) -> Iterator[RdevServer]:
    """``rdev serve`` with a fast CI linker (the default polls every 5 s)."""
    server = RdevServer(db_url, tmp_path / "data", tmp_path, RDEV_CI_POLL_INTERVAL_SECONDS="0.2")
    server.start()
    try:
        yield server
    finally:
        server.stop_all()


@pytest.fixture
def fake() -> Iterator[FakeWoodpecker]:
    with running_fake_woodpecker() as f:
        f.add_repo(CI_REPO)
        yield f


async def wait_ci(
    api: httpx.AsyncClient, task_id: str, status: str, timeout: float = 120.0
) -> dict[str, Any]:
    """Poll the build's ``ci`` until its status is ``status`` (only a failure waits long)."""
    deadline = time.monotonic() + timeout
    ci = None
    while time.monotonic() < deadline:
        ci = (await api.get(f"/builds/{task_id}")).json()["ci"]
        if ci and ci["status"] == status:
            return ci  # type: ignore[no-any-return]
        await asyncio.sleep(0.1)
    raise AssertionError(f"build {task_id} ci never reached {status!r}: {ci}")


def db_cells(db_url: str) -> list[tuple[str, str, str]]:
    """(table, column, value as text) for every cell of every table."""
    engine = sa.create_engine(db_url.replace("+aiosqlite", ""))
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            res = conn.execute(sa.text(f'SELECT * FROM "{table}"'))
            cols = list(res.keys())
            for row in res:
                out += [(table, c, str(v)) for c, v in zip(cols, row, strict=True)]
    engine.dispose()
    return out


async def test_pushed_build_follows_its_pipeline_to_failure_and_calls_back_ci_failed(
    ci_server,
    git_server,
    fake,
    receivers,
    db_url,  # noqa: F811
):
    receiver = await receivers(script=[200])
    name = "ci-" + uuid.uuid4().hex[:8]
    async with ci_server.client() as api:
        r = await api.post(
            "/projects",
            json={
                "name": name,
                "repo_url": git_server.make_repo(name, {"README.md": "hi\n"}),
                "git_credential": git_server.token,
            },
        )
        assert r.status_code == 201, r.text
        webhook_secret = r.json()["webhook_secret"]
        r = await api.patch(
            f"/projects/{name}",
            json={
                "ci": {
                    "provider": "woodpecker",
                    "server_url": fake.url,
                    "repo": CI_REPO,
                    "token": fake.token,
                }
            },
        )
        assert r.status_code == 200, r.text
        worker_token = await ci_server.token(["workers:run"])
        ci_server.start_worker(worker_token, env={"RDEV_COMMAND_AGENT": "echo hi > hello.txt"})
        r = await api.post(
            f"/projects/{name}/builds",
            json={
                "prompt": "say hi",
                "agent": "command",
                "auto_commit": True,
                "auto_push": True,
                "callback_url": receiver.url("/ci"),
                "events": ["build.completed", "build.ci_failed", "build.ci_passed"],
            },
        )
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]

        build = await wait_for_status(api, task_id, {"completed", "failed"})
        assert build["status"] == "completed", build
        commit = build["result"]["commit_sha"]
        assert commit and commit == git_server.head(name, "main")
        assert f"Build-Id: {task_id}" in git_server.message(name)
        # The build completed before CI knew anything: the linker is searching.
        ci = await wait_ci(api, task_id, "searching")
        assert ci["provider"] == "woodpecker" and ci["pipeline_number"] is None

        pipe = fake.add_pipeline(CI_REPO, commit, "main", "pending", steps=["clone", "test"])
        ci = await wait_ci(api, task_id, "pending")
        assert ci["pipeline_number"] == pipe.number
        fake.set_status(CI_REPO, pipe.number, "running", steps={"clone": "success"})
        await wait_ci(api, task_id, "running")
        fake.set_status(CI_REPO, pipe.number, "failure", steps={"test": "failure"})
        ci = await wait_ci(api, task_id, "failure")
        assert ci["failed_steps"] == ["test"]
        assert ci["raw_status"] == "failure"
        assert ci["url"] == f"{fake.url}/repos/{fake.add_repo(CI_REPO).id}/pipeline/{pipe.number}"

        requests = await receiver.wait_for(2)
        by_type = {json.loads(q.body)["type"]: q for q in requests}
        assert set(by_type) == {"build.completed", "build.ci_failed"}
        failed = by_type["build.ci_failed"]
        assert independent_verify(webhook_secret, failed.headers, failed.body)
        data = json.loads(failed.body)["data"]
        assert data["task_id"] == task_id
        assert data["ci"]["failed_steps"] == ["test"]
        assert data["ci"]["pipeline_number"] == pipe.number

        want = {("build.completed", "delivered"), ("build.ci_failed", "delivered")}
        deadline = time.monotonic() + 60  # only a failure waits this long
        while True:  # the receiver answered; the dispatcher records that right after
            items = (await api.get(f"/builds/{task_id}/deliveries")).json()["items"]
            seen = {(d["event"], d["state"]) for d in items}
            if seen == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert seen == want
        pipelines = await api.get(f"/projects/{name}/pipelines/{pipe.number}")
        assert pipelines.status_code == 200 and fake.token not in pipelines.text

    # The CI token: nowhere in the server's or worker's logs, and in exactly one column.
    assert fake.token not in ci_server.log()
    for w in ci_server.workers:
        assert fake.token not in w.log()
    holders = {(t, c) for t, c, v in db_cells(db_url) if fake.token in v}
    assert holders == {("projects", "ci_token")}
