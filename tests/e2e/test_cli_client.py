"""The `rdev` API client end to end: a real `rdev serve`, a real `rdev worker` with the
command agent, a token-protected git server, and the CLI run as a subprocess."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.git_server import git_server as git_server_fixture
from tests.fixtures.processes import RdevServer, base_env, free_port
from tests.fixtures.processes import rdev_server as rdev_server_fixture

git_server = git_server_fixture
rdev_server = rdev_server_fixture
pytestmark = pytest.mark.e2e

# Fails when the prompt says so; otherwise prints a few lines and writes a file.
AGENT = (
    'case "$RDEV_PROMPT" in *please-fail*) echo "going to fail"; exit 3;; esac; '
    'for i in 1 2 3; do echo "agent line $i"; done; echo ok > out.txt'
)


async def run_cli(
    *args: str, env: dict[str, str], stdin: str = "", timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rdev.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
async def setup(rdev_server: RdevServer, git_server: Any, tmp_path: Path) -> dict[str, Any]:
    """A project with a real repository, a running worker, and the CLI's environment."""
    name = "cli-" + uuid.uuid4().hex[:8]
    url = git_server.make_repo(name, {"README.md": "hello\n"})
    async with rdev_server.client() as api:
        r = await api.post(
            "/projects", json={"name": name, "repo_url": url, "git_credential": git_server.token}
        )
        assert r.status_code == 201, r.text
    worker_token = await rdev_server.token(["workers:run"])
    rdev_server.start_worker(worker_token, env={"RDEV_COMMAND_AGENT": AGENT})
    user_token = await rdev_server.token(
        ["builds:read", "builds:write", "projects:read", "projects:write"]
    )
    env = base_env(
        RDEV_SERVER=rdev_server.url,
        RDEV_TOKEN=user_token,
        RDEV_CLIENT_CONFIG=str(tmp_path / "client.toml"),
        COLUMNS="200",
    )
    return {"project": name, "env": env, "token": user_token}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }


async def test_submit_watch_exits_zero_on_success_and_nonzero_on_failure(
    setup: dict[str, Any], rdev_server: RdevServer
) -> None:
    async with rdev_server.client() as api:
        before = samples((await api.get("/metrics")).text)
    ok = await run_cli(
        "build", "submit", setup["project"], "--prompt", "say hi", "--watch", env=setup["env"]
    )
    assert ok.returncode == 0, ok.stderr
    assert [ln for ln in ok.stdout.splitlines() if ln.startswith("agent line")] == [
        "agent line 1",
        "agent line 2",
        "agent line 3",
    ]
    assert "completed" in ok.stderr
    bad = await run_cli(
        "build",
        "submit",
        setup["project"],
        "--prompt",
        "please-fail now",
        "--watch",
        env=setup["env"],
    )
    assert bad.returncode == 1, (bad.stdout, bad.stderr)
    assert "going to fail" in bad.stdout
    assert "failed" in bad.stderr
    assert "Traceback" not in bad.stderr

    async with rdev_server.client() as api:
        after = samples((await api.get("/metrics")).text)

    def moved(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert moved("rdev_builds_total", status="completed") == 1
    assert moved("rdev_builds_total", status="failed") == 1
    assert moved("rdev_claim_latency_seconds_count") == 2
    assert moved("rdev_build_duration_seconds_count", status="completed") == 1
    assert (
        moved(
            "rdev_http_requests_total",
            method="POST",
            route="/projects/{project_id}/builds",
            code="202",
        )
        == 2
    )


async def test_json_output_parses_for_every_command(setup: dict[str, Any]) -> None:
    env, project = setup["env"], setup["project"]
    watched = await run_cli(
        "build", "submit", project, "--prompt", "json please", "--watch", "--json", env=env
    )
    assert watched.returncode == 0, watched.stderr
    final = json.loads(watched.stdout)
    assert final["status"] == "completed" and final["result"]["success"] is True
    task_id = final["task_id"]

    queued = await run_cli("build", "submit", project, "--prompt", "another", "--json", env=env)
    assert queued.returncode == 0, queued.stderr
    assert json.loads(queued.stdout)["status"] == "pending"

    show = json.loads((await run_cli("build", "show", task_id, "--json", env=env)).stdout)
    assert show["task_id"] == task_id
    assert [e["to"] for e in show["events"]][:3] == ["pending", "running", "completed"]
    logs = json.loads((await run_cli("build", "logs", task_id, "--json", env=env)).stdout)
    assert "agent line 3" in [c["text"] for c in logs["chunks"]]
    listed = json.loads(
        (
            await run_cli(
                "builds", "list", "--project", project, "--status", "completed", "--json", env=env
            )
        ).stdout
    )
    assert task_id in [b["task_id"] for b in listed["items"]]
    assert {b["status"] for b in listed["items"]} == {"completed"}
    projects = json.loads((await run_cli("projects", "list", "--json", env=env)).stdout)
    assert project in [p["name"] for p in projects]
    workers = json.loads((await run_cli("workers", "list", "--json", env=env)).stdout)
    assert any(w["online"] for w in workers)


async def test_logs_follow_and_cancel(setup: dict[str, Any], rdev_server: RdevServer) -> None:
    env = setup["env"]
    done = json.loads(
        (
            await run_cli(
                "build", "submit", setup["project"], "--prompt", "hi", "--watch", "--json", env=env
            )
        ).stdout
    )
    followed = await run_cli("build", "logs", done["task_id"], "--follow", env=env)
    assert followed.returncode == 0, followed.stderr
    assert "agent line 2" in followed.stdout
    # A finished build cannot be cancelled: a one-line 409, exit 2.
    refused = await run_cli("build", "cancel", done["task_id"], env=env)
    assert refused.returncode == 2
    assert (
        refused.stderr.startswith("error: refused (409)")
        and len(refused.stderr.strip().splitlines()) == 1
    )


async def test_login_writes_a_private_config_the_other_commands_use(
    setup: dict[str, Any], rdev_server: RdevServer, tmp_path: Path
) -> None:
    env = {k: v for k, v in setup["env"].items() if k not in ("RDEV_SERVER", "RDEV_TOKEN")}
    r = await run_cli(
        "login", "--server", rdev_server.url + "/", "--token", setup["token"], env=env
    )
    assert r.returncode == 0, r.stderr
    path = Path(env["RDEV_CLIENT_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f'server = "{rdev_server.url}"' in path.read_text()
    assert setup["token"] not in r.stdout + r.stderr
    r = await run_cli("projects", "list", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert setup["project"] in r.stdout
    # The token can also come from stdin at the prompt.
    r = await run_cli("login", "--server", rdev_server.url, env=env, stdin="wrong-token\n")
    assert r.returncode == 2
    assert "401" in r.stderr and "Traceback" not in r.stderr


async def test_errors_are_one_clear_line(setup: dict[str, Any]) -> None:
    env = setup["env"]
    cases = [
        (
            {**env, "RDEV_SERVER": f"http://127.0.0.1:{free_port()}"},
            ["builds", "list"],
            "error: cannot reach the rdev server at http://127.0.0.1:",
        ),
        (
            {**env, "RDEV_TOKEN": "not-a-real-token"},
            ["builds", "list"],
            "error: the server rejected the token (401",
        ),
        (env, ["build", "show", "no-such-build"], "error: not found (404)"),
        (
            {k: v for k, v in env.items() if k != "RDEV_SERVER"},
            ["workers", "list"],
            "error: no server configured",
        ),
    ]
    for case_env, args, expected in cases:
        r = await run_cli(*args, env=case_env)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith(expected), (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "not-a-real-token" not in r.stderr
