"""``rdev serve`` alone is a complete system: create-and-build on the local repo host with a real
server and a real worker; the worker clones and pushes over the server's own /git with the
task git credential it got with its claim; the repository is cloned back over HTTP with a
token, and refused without one or with a token for another project. Both backends."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import rdev_server, wait_for_status  # noqa: F401

pytestmark = pytest.mark.e2e

SCAFFOLD_MESSAGE = "Initial commit from template"


def git(
    *args: str, cwd: Path | None = None, header: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    if header:
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=header,
        )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def basic(token: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


async def test_create_and_build_on_local_host_commits_on_top_of_the_scaffold(
    rdev_server,  # noqa: F811
    tmp_path: Path,
):
    name = "svc-" + uuid.uuid4().hex[:8]
    agent = "echo 'Edited by the agent.' >> README.md && echo agent done"
    async with rdev_server.client() as api:
        worker_token = await rdev_server.token(["workers:run"])
        rdev_server.start_worker(worker_token, env={"RDEV_COMMAND_AGENT": agent})
        r = await api.post(
            "/project/create-and-build",
            json={
                "project": {
                    "name": name,
                    "template": "python-service",
                    "variables": {"service_name": "clock"},
                    "host": "local",
                },
                "build": {
                    "prompt": "note the edit in the README",
                    "agent": "command",
                    "auto_commit": True,
                    "auto_push": True,
                },
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        build = await wait_for_status(api, created["task_id"], {"completed", "failed"})
        reader = await rdev_server.token(["builds:read"], [name])
        stranger = await rdev_server.token(["builds:read", "workers:run"], ["someone-else"])

    assert build["status"] == "completed", build
    assert build["template"] == {"name": "python-service", "version": "1.0.0"}
    sha = build["result"]["commit_sha"]
    assert sha and build["agent"]["pushed"] is True
    clone_url = created["project"]["repo_url"]
    assert clone_url == f"{rdev_server.url}/git/{name}.git"

    # Cloned back over HTTP with a token limited to this project: the build's commit sits on
    # top of the scaffold commit.
    dest = tmp_path / "back"
    cloned = git("clone", "-q", clone_url, str(dest), header=basic(reader))
    assert cloned.returncode == 0, cloned.stderr
    log = git("log", "--format=%H %s", "main", cwd=dest).stdout.splitlines()
    assert len(log) == 2
    assert log[0].split()[0] == sha
    assert log[1].endswith(SCAFFOLD_MESSAGE)
    assert build["agent"]["base_commit"] == log[1].split()[0]
    readme = (dest / "README.md").read_text()
    assert "clock" in readme and readme.rstrip().endswith("Edited by the agent.")
    assert (dest / "service" / "app.py").is_file()

    # Refused without a token (401) and with a token for another project (403).
    refs = f"{clone_url}/info/refs?service=git-upload-pack"
    async with httpx.AsyncClient(timeout=30) as raw:
        anonymous = await raw.get(refs)
        foreign = await raw.get(refs, headers={"Authorization": f"Bearer {stranger}"})
        mine = await raw.get(refs, headers={"Authorization": f"Bearer {reader}"})
    assert anonymous.status_code == 401
    assert foreign.status_code == 403
    assert mine.status_code == 200
    no_token = git("clone", "-q", clone_url, str(tmp_path / "anon"))
    # git asks for a user name only after a 401; prompts are off, so it gives up.
    assert no_token.returncode != 0 and "could not read Username" in no_token.stderr
    assert not (tmp_path / "anon" / "README.md").exists()
    other = git("clone", "-q", clone_url, str(tmp_path / "other"), header=basic(stranger))
    assert other.returncode != 0 and "403" in other.stderr

    # The task credential never shows up in the logs of the server or the worker.
    for text in (rdev_server.log(), *(w.log() for w in rdev_server.workers)):
        assert "rdevgit_" not in text
        assert worker_token not in text
