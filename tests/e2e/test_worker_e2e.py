"""A build end to end: real `rdev serve`, real `rdev worker` subprocesses, a real git
smart-HTTP server that requires a token. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.git_server import git_server as git_server_fixture
from tests.fixtures.processes import RDEV, wait_for_status
from tests.fixtures.processes import rdev_server as rdev_server_fixture

git_server = git_server_fixture
rdev_server = rdev_server_fixture
pytestmark = pytest.mark.e2e


async def _project(api, git_server, *, credential: str | None = None, files=None) -> dict:
    name = "e2e-" + uuid.uuid4().hex[:8]
    url = git_server.make_repo(name, files or {"README.md": "hello\n", "old.txt": "bye\n"})
    r = await api.post(
        "/projects",
        json={
            "name": name,
            "repo_url": url,
            "default_branch": "main",
            "git_credential": credential if credential is not None else git_server.token,
        },
    )
    assert r.status_code == 201, r.text
    return {"name": name, "url": url}


async def _submit(api, project: str, **spec) -> str:
    body = {"prompt": "make the change", "agent": "command", **spec}
    r = await api.post(f"/projects/{project}/builds", json=body)
    assert r.status_code == 202, r.text
    return r.json()["task_id"]


async def _until(what: str, check, limit: float = 120.0) -> None:
    """Poll ``check()`` until true; only a failure waits ``limit`` s."""
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, f"never happened within {limit}s: {what}"
        await asyncio.sleep(0.1)


def _all_db_text(db_url: str, data_dir: Path) -> str:
    """Every value of every row of every table, as one string (to grep for secrets)."""
    if db_url.startswith("sqlite"):
        engine = sa.create_engine(db_url.replace("+aiosqlite", ""))
    else:
        engine = sa.create_engine(db_url)
    out = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                out.append(repr(tuple(row)))
    engine.dispose()
    return "\n".join(out)


async def test_build_commits_and_pushes_the_agents_change_without_leaking_the_token(
    rdev_server, git_server, tmp_path, db_url
):
    spy = tmp_path / "spy"
    spy.mkdir()
    agent = (
        "echo new > added.txt && echo changed >> README.md && rm old.txt && "
        f"cp .git/config {spy}/git-config && env > {spy}/agent-env && echo agent says hi"
    )
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": agent})
        task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
        build = await wait_for_status(api, task_id, {"completed", "failed"})
        logs = (await api.get(f"/builds/{task_id}/logs")).json()
        events = (await api.get(f"/builds/{task_id}/events")).json()

    assert build["status"] == "completed", build
    result = build["result"]
    changes = {(c["path"], c["change"]) for c in result["files_changed"]}
    assert changes == {("added.txt", "added"), ("README.md", "modified"), ("old.txt", "deleted")}
    assert result["commit_sha"] == git_server.head(project["name"], "main")
    checkout = git_server.clone_back(project["name"], tmp_path / "back")
    assert (checkout / "added.txt").read_text() == "new\n"
    assert not (checkout / "old.txt").exists()
    assert f"Build-Id: {task_id}" in git_server.message(project["name"])
    assert "agent says hi" in result["output"]
    assert any("agent says hi" in c["text"] for c in logs["chunks"])
    assert [e["to"] for e in events] == ["pending", "running", "completed"]
    assert result["duration_ms"] > 0

    secret = git_server.token
    assert secret not in (spy / "git-config").read_text()
    assert secret not in (spy / "agent-env").read_text()
    for w in rdev_server.workers:
        assert secret not in w.log()
    assert secret not in rdev_server.log()
    assert secret not in str(build)
    db_text = _all_db_text(db_url, tmp_path / "data")
    # The credential is stored once, in the project row, server-side; nowhere else.
    assert db_text.count(secret) == 1


async def test_wrong_token_fails_fast_saying_authentication_failed(rdev_server, git_server):
    async with rdev_server.client() as api:
        project = await _project(api, git_server, credential="not-the-token-123456")
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": "echo x > x.txt"})
        task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
        build = await wait_for_status(api, task_id, {"completed", "failed"})
        events = (await api.get(f"/builds/{task_id}/events")).json()
    assert build["status"] == "failed"
    assert "authentication failed" in build["result"]["error"].lower()
    assert "not-the-token-123456" not in str(build)
    # Fast: the first attempt failed for good (git never prompted; nothing was retried).
    assert build["attempts"] == 1
    assert [e["to"] for e in events] == ["pending", "running", "failed"]


async def test_no_changes_completes_with_null_commit(rdev_server, git_server):
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": "true"})
        task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
        build = await wait_for_status(api, task_id, {"completed", "failed"})
    assert build["status"] == "completed"
    assert build["result"]["commit_sha"] is None
    assert build["result"]["files_changed"] == []


async def test_concurrent_pushes_to_one_branch_lose_no_commit(rdev_server, git_server, tmp_path):
    agent = 'echo "$RDEV_PROMPT" > "file-$(echo "$RDEV_PROMPT" | tr -dc a-z0-9).txt"; sleep 1'
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, slots=2, env={"RDEV_COMMAND_AGENT": agent})
        ids = [
            await _submit(api, project["name"], prompt=p, auto_commit=True, auto_push=True)
            for p in ("alpha", "beta")
        ]
        builds = [await wait_for_status(api, t, {"completed", "failed"}) for t in ids]
    subjects = git_server.log(project["name"])
    checkout = git_server.clone_back(project["name"], tmp_path / "back")
    shas = subprocess.run(
        ["git", "-C", str(checkout), "log", "--format=%H"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert any(b["status"] == "completed" for b in builds)
    for b, name in zip(builds, ("alpha", "beta"), strict=True):
        if b["status"] == "completed":
            # the commit the build reports is on the remote branch, with its change
            assert b["result"]["commit_sha"] in shas
            assert name in subjects
            assert (checkout / f"file-{name}.txt").read_text() == f"{name}\n"
        else:
            assert "push" in b["result"]["error"].lower()


async def test_killed_worker_build_is_reclaimed_and_completed_by_another(
    rdev_server, git_server, tmp_path
):
    marker = tmp_path / "first-run"
    agent = f"if [ ! -e {marker} ]; then touch {marker}; sleep 300; fi; echo done > done.txt"
    try:
        async with rdev_server.client() as api:
            project = await _project(api, git_server)
            token = await rdev_server.token(["workers:run"])
            first = rdev_server.start_worker(token, name="first", env={"RDEV_COMMAND_AGENT": agent})
            task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
            await wait_for_status(api, task_id, {"running"})
            await _until("the first run started", marker.exists)
            first.kill(signal.SIGKILL)
            rdev_server.start_worker(token, name="second", env={"RDEV_COMMAND_AGENT": agent})
            build = await wait_for_status(api, task_id, {"completed", "failed"})
            events = (await api.get(f"/builds/{task_id}/events")).json()
    finally:
        _kill_groups_of(str(marker))  # the SIGKILLed worker's agent (sleep 300) lives on
    assert build["status"] == "completed", build
    assert build["attempts"] == 2
    transitions = [(e["from"], e["to"]) for e in events]
    assert transitions == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "pending"),
        ("pending", "running"),
        ("running", "completed"),
    ]
    assert events[1]["actor"] == "worker:first" and events[3]["actor"] == "worker:second"


def _kill_groups_of(needle: str) -> None:
    """SIGKILL the process group of every process whose command line holds ``needle``."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if needle.encode() in Path(f"/proc/{entry.name}/cmdline").read_bytes():
                    os.killpg(os.getpgid(int(entry.name)), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


async def test_cancel_of_a_running_build_kills_the_agent_process_group(
    rdev_server, git_server, tmp_path
):
    pidfile = tmp_path / "pids"
    agent = f"sleep 300 & echo $! > {pidfile}; echo $$ >> {pidfile}; echo started; wait"
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": agent})
        task_id = await _submit(api, project["name"])
        await _until(
            "the agent wrote its pids",
            lambda: pidfile.exists() and len(pidfile.read_text().split()) == 2,
        )
        pids = [int(p) for p in pidfile.read_text().split()]
        r = await api.post(f"/builds/{task_id}/cancel")
        assert r.status_code == 200 and r.json()["cancel_requested"]
        # The agent sleeps 300 s: only the cancel ends the build within the wait.
        build = await wait_for_status(api, task_id, {"cancelled", "completed", "failed"})
    assert build["status"] == "cancelled"
    await _until("the agent's processes are gone", lambda: all(_pid_gone(p) for p in pids))


@pytest.mark.parametrize(
    "agent_seconds,grace,expected",
    # The grace surely outlasts the agent (2 s of 120) or surely does not (5 s of 300).
    [(2, 120, "completed"), (300, 5, "cancelled")],
)
async def test_sigterm_lets_builds_end_with_a_true_status(
    rdev_server, git_server, tmp_path, agent_seconds, grace, expected
):
    started = tmp_path / "started"
    agent = f"touch {started}; sleep {agent_seconds}; echo ok > ok.txt"
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        w = rdev_server.start_worker(
            token, env={"RDEV_COMMAND_AGENT": agent, "RDEV_SHUTDOWN_GRACE_SECONDS": str(grace)}
        )
        task_id = await _submit(api, project["name"], auto_commit=True)
        await _until("the agent started", started.exists)
        rc = await asyncio.to_thread(w.kill, signal.SIGTERM, 240)
        build = await wait_for_status(api, task_id, {"completed", "failed", "cancelled"})
    assert rc == 0
    assert build["status"] == expected


RETRYING = "server call failed; retrying"


async def wait_for_log(proc: Any, text: str, more_than: int = 0, timeout: float = 120) -> None:
    """Until ``text`` is in ``proc``'s log more than ``more_than`` times (only a failure waits)."""
    deadline = time.monotonic() + timeout
    while proc.log().count(text) <= more_than:
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{proc.log()[-2000:]}"
        await asyncio.sleep(0.1)


# the lease outlives a slow restart on a loaded machine: the same attempt must report
@pytest.mark.server_env(RDEV_LEASE_SECONDS="600")
async def test_worker_rides_out_a_server_restart_mid_build(rdev_server, git_server, tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    # The agent runs until the test lets it end: the server surely dies mid-run. It prints
    # while it waits, so the worker keeps shipping log lines and finds the server gone (a
    # 600 s lease means a heartbeat only every 150 s).
    agent = (
        f"touch {started}; while [ ! -e {release} ]; do echo waiting; sleep 0.2; done;"
        " echo after > a.txt"
    )
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        worker = rdev_server.start_worker(token, env={"RDEV_COMMAND_AGENT": agent})
        task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
        await _until("the agent started", started.exists)
    seen = worker.log().count(RETRYING)
    await asyncio.to_thread(rdev_server.kill, signal.SIGKILL)
    await wait_for_log(worker, RETRYING, more_than=seen)  # the worker found the server gone
    await asyncio.to_thread(rdev_server.start)
    release.touch()  # the run ends after the restart, reporting to the new server process
    async with rdev_server.client() as api:
        build = await wait_for_status(api, task_id, {"completed", "failed"})
    assert build["status"] == "completed", build
    assert build["attempts"] == 1  # the same run reported its result: nothing re-ran
    assert build["result"]["commit_sha"] == git_server.head(project["name"], "main")
    assert worker.alive()


# A 600 s lease: only the restart, not the reaper, can give the build back in this test.
@pytest.mark.server_env(RDEV_LEASE_SECONDS="600")
async def test_a_worker_restarted_under_its_name_takes_back_its_dead_predecessors_build(
    rdev_server, git_server, tmp_path
):
    """...at once (not after the lease), and removes the workdir the dead process left."""
    started, release, work = tmp_path / "started", tmp_path / "release", tmp_path / "work"
    agent = f"touch {started}; while [ ! -e {release} ]; do sleep 0.1; done; echo after > a.txt"
    async with rdev_server.client() as api:
        project = await _project(api, git_server)
        token = await rdev_server.token(["workers:run"])
        env = {"RDEV_COMMAND_AGENT": agent}
        first = rdev_server.start_worker(token, name="steady", env=env, workdir=work)
        task_id = await _submit(api, project["name"], auto_commit=True, auto_push=True)
        await _until("the agent started", started.exists)
        left = list((work / "rdev-worker-steady").iterdir())
        await asyncio.to_thread(first.kill, signal.SIGKILL)  # no result, no goodbye
        release.touch()  # the next run of the agent ends at once
        rdev_server.start_worker(token, name="steady", env=env, workdir=work)
        build = await wait_for_status(api, task_id, {"completed", "failed"})
        events = (await api.get(f"/builds/{task_id}/events")).json()

    assert build["status"] == "completed", build
    assert build["attempts"] == 2
    assert [(e["to"], e["reason"]) for e in events[1:3]] == [
        ("running", "claimed"),
        ("pending", "worker restarted; requeued"),
    ]
    assert build["result"]["commit_sha"] == git_server.head(project["name"], "main")
    assert len(left) == 1 and not left[0].exists()  # swept; the new run cleaned up its own


async def test_the_worker_token_stays_off_the_command_line_every_process_can_read(
    rdev_server, tmp_path
):
    token = await rdev_server.token(["workers:run"])
    from_env = rdev_server.start_worker(token, name="env-token")
    token_file = tmp_path / "worker-token"
    token_file.write_text(token + "\n")
    from_file = rdev_server.start_worker(
        "", name="file-token", env={"RDEV_TOKEN_FILE": str(token_file)}
    )
    for proc in (from_env, from_file):
        await wait_for_log(proc, "worker registered")
        cmdline = Path(f"/proc/{proc.proc.pid}/cmdline").read_bytes()
        assert token.encode() not in cmdline

    on_the_line = subprocess.Popen(
        [*RDEV, "worker", "--server", "http://127.0.0.1:9", "--token", "rdev_x", "--name", "ps"],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        lines = [await asyncio.to_thread(on_the_line.stderr.readline) for _ in range(3)]
    finally:
        os.killpg(on_the_line.pid, signal.SIGKILL)
        on_the_line.wait()
    [warning] = [line for line in lines if "visible to every process" in line]
    assert "RDEV_TOKEN" in warning
