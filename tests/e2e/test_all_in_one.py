"""The one-command promise: ``rdev serve`` with nothing but a data dir is a complete system.

Each test starts a real ``python -m rdev.cli serve`` whose only RDEV_* settings are the data
dir, the ``command`` agent and (where said) the admin token: SQLite under the data dir, the
embedded worker, the local repo host. A create-and-build on the ``static-site`` template is
built by the embedded worker and its commit is cloned back over the server's own /git.
Without an admin token the first start prints a bootstrap token once; with the embedded
worker switched off (flag or setting) no worker ever registers.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.processes import Proc, free_port, wait_for_status

pytestmark = pytest.mark.e2e

ADMIN = "rdev_allinone_admin_" + uuid.uuid4().hex
AGENT = "date > stamp.txt && echo stamped"
SCAFFOLD_MESSAGE = "Initial commit from template"
BOOTSTRAP_RE = re.compile(r"bootstrap admin token \(shown only once\):\s+(\S+)")


class Serve(Proc):
    """``rdev serve --port P`` with exactly the RDEV_* variables given, logging to a file."""

    def __init__(self, tmp: Path, data_dir: Path, rdev_env: dict[str, str], *flags: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
        env.update(PYTHONUNBUFFERED="1", RDEV_DATA_DIR=str(data_dir), **rdev_env)
        log = tmp / f"serve-{self.port}.log"
        super().__init__(
            [sys.executable, "-m", "rdev.cli", "serve", "--port", str(self.port), *flags],
            env,
            log,
        )

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + 120  # only a failure waits this long
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"rdev serve exited:\n{self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"rdev serve not ready:\n{self.log()[-3000:]}")

    def api(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
        )


@pytest.fixture
def serving(tmp_path: Path) -> Any:
    """A factory for servers that are all stopped at the end of the test."""
    started: list[Serve] = []

    def start(data_dir: Path, rdev_env: dict[str, str], *flags: str) -> Serve:
        server = Serve(tmp_path, data_dir, rdev_env, *flags)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


def git(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


async def test_serve_alone_builds_a_template_project_with_its_embedded_worker(
    serving: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = serving(data_dir, {"RDEV_COMMAND_AGENT": AGENT, "RDEV_ADMIN_TOKEN": ADMIN})
    name = "site-" + uuid.uuid4().hex[:8]
    async with server.api(ADMIN) as api:
        r = await api.post(
            "/project/create-and-build",
            json={
                "project": {"name": name, "template": "static-site"},
                "build": {"prompt": "stamp the date", "auto_commit": True, "auto_push": True},
            },
        )
        assert r.status_code == 201, r.text
        created = r.json()
        build = await wait_for_status(
            api, created["task_id"], {"completed", "failed", "cancelled"}, timeout=90
        )
        workers = (await api.get("/workers")).json()
        events = (await api.get(f"/builds/{created['task_id']}/events")).json()
        token_names = [t["name"] for t in (await api.get("/tokens")).json()]

    assert build["status"] == "completed", build
    sha = build["result"]["commit_sha"]
    assert sha and build["agent"]["pushed"] is True
    assert [f["path"] for f in build["result"]["files_changed"]] == ["stamp.txt"]

    # The embedded worker did it: it is the one worker, online, offering `command`.
    [worker] = workers
    assert "embedded-worker" in token_names  # what the test without it looks for
    assert worker["name"].startswith("embedded-")
    assert worker["online"] is True
    assert "command" in worker["agents"]
    event_text = str(events)
    assert worker["id"] in event_text or worker["name"] in event_text, events

    # Everything lives under the data dir: the SQLite file and the local repository.
    assert (data_dir / "rdev.db").is_file()
    clone_url = created["project"]["repo_url"]
    assert clone_url == f"{server.url}/git/{name}.git"

    # Cloned back over HTTP (token as the Basic password in a header, never in the URL):
    # the build's commit sits right on top of the scaffold commit.
    dest = tmp_path / "back"
    cloned = git("clone", "-q", clone_url, str(dest), cwd=tmp_path, token=ADMIN)
    assert cloned.returncode == 0, cloned.stderr
    log = git("log", "--format=%H %s", "HEAD", cwd=dest).stdout.splitlines()
    assert [line.split()[0] for line in log][:1] == [sha]
    assert len(log) == 2 and log[1].endswith(SCAFFOLD_MESSAGE), log
    assert build["agent"]["base_commit"] == log[1].split()[0]
    assert (dest / "stamp.txt").read_text().strip()
    assert (dest / "layout.html").is_file()
    assert ADMIN not in git("config", "--list", cwd=dest).stdout
    assert ADMIN not in server.log()


async def test_first_start_prints_a_working_bootstrap_token_once(
    serving: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    first = serving(data_dir, {"RDEV_COMMAND_AGENT": AGENT})
    found = BOOTSTRAP_RE.findall(first.log())
    assert len(found) == 1, first.log()[-3000:]
    token = found[0]
    async with first.api(token) as api:
        assert (await api.get("/projects")).status_code == 200
        assert (await api.get("/tokens")).status_code == 200  # admin-only
    async with first.api("rdev_not_a_token_" + uuid.uuid4().hex) as api:
        assert (await api.get("/projects")).status_code == 401
    first.kill(signal.SIGTERM)
    assert first.log().count(token) == 1

    second = serving(data_dir, {"RDEV_COMMAND_AGENT": AGENT})
    assert "bootstrap admin token" not in second.log()
    assert token not in second.log()
    async with second.api(token) as api:
        assert (await api.get("/projects")).status_code == 200


@pytest.mark.parametrize("switch", ["flag", "setting"])
async def test_without_the_embedded_worker_no_worker_registers(
    serving: Any, tmp_path: Path, switch: str
) -> None:
    rdev_env = {"RDEV_COMMAND_AGENT": AGENT, "RDEV_ADMIN_TOKEN": ADMIN}
    flags: tuple[str, ...] = ()
    if switch == "flag":
        flags = ("--no-embedded-worker",)
    else:
        rdev_env["RDEV_EMBEDDED_WORKER"] = "0"
    server = serving(tmp_path / "data", rdev_env, *flags)
    async with server.api(ADMIN) as api:
        r = await api.post("/projects", json={"name": "idle", "repo_url": "file:///nowhere.git"})
        assert r.status_code == 201, r.text
        r = await api.post("/projects/idle/builds", json={"prompt": "x", "agent": "command"})
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        # Started, the embedded worker gets its token before the server answers (a start-up
        # hook) and registers right after: neither happened.
        tokens = (await api.get("/tokens")).json()
        assert "embedded-worker" not in [t["name"] for t in tokens], tokens
        assert (await api.get("/workers")).json() == []
        assert (await api.get(f"/builds/{task_id}")).json()["status"] == "pending"
