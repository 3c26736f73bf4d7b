"""Builds against an ssh:// remote: a real sshd on a loopback port, a real worker."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.git_server import commit_files, git, init_bare
from tests.fixtures.processes import rdev_server as rdev_server_fixture
from tests.fixtures.processes import wait_for_status

rdev_server = rdev_server_fixture
pytestmark = pytest.mark.e2e
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SshServer:
    def __init__(self, root: Path) -> None:
        self.root, self.port = root, _free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.key = root / "client_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")],
            check=True,
        )
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "StrictModes no\nPermitRootLogin prohibit-password\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(root / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "sshd.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 60  # only a failure waits this long
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError((root / "sshd.log").read_text())

    def ssh_command(self, key: Path | None = None) -> str:
        return (
            f"ssh -i {key or self.key} -o IdentitiesOnly=yes -o BatchMode=yes "
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10"
        )

    def url(self, bare: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{bare}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    if not Path(SSHD).exists():
        why = "sshd is not installed (scripts/setup.d/15-openssh.sh installs it)"
        if os.environ.get("RDEV_REQUIRE_SSHD") == "1":
            pytest.fail(why)
        pytest.skip(why)
    server = SshServer(tmp_path / "ssh")
    try:
        yield server
    finally:
        server.stop()


def _bare_repo(tmp_path: Path) -> Path:
    bare = init_bare(tmp_path / f"r-{uuid.uuid4().hex[:6]}.git")
    commit_files(bare, {"README.md": "hello\n"})
    return bare


async def _ssh_project_with_worker(api, rdev_server, repo_url: str, env: dict[str, str]) -> str:
    """A project on ``repo_url`` and a worker started with ``env``; returns its name."""
    r = await api.post(
        "/projects", json={"name": "ssh-" + uuid.uuid4().hex[:6], "repo_url": repo_url}
    )
    token = await rdev_server.token(["workers:run"])
    rdev_server.start_worker(token, env=env)
    return str(r.json()["name"])


async def test_build_clones_and_pushes_over_ssh(rdev_server, sshd, tmp_path):
    bare = _bare_repo(tmp_path)
    async with rdev_server.client() as api:
        name = await _ssh_project_with_worker(
            api,
            rdev_server,
            sshd.url(bare),
            {
                "RDEV_COMMAND_AGENT": "echo via-ssh > ssh.txt",
                "RDEV_GIT_SSH_COMMAND": sshd.ssh_command(),
            },
        )
        r = await api.post(
            f"/projects/{name}/builds", json={"prompt": "x", "auto_commit": True, "auto_push": True}
        )
        build = await wait_for_status(api, r.json()["task_id"], {"completed", "failed"})
    assert build["status"] == "completed", build
    head = git("rev-parse", "main", cwd=bare).strip()
    assert build["result"]["commit_sha"] == head
    assert git("show", "main:ssh.txt", cwd=bare) == "via-ssh\n"


async def test_ssh_without_an_accepted_key_fails_fast(rdev_server, sshd, tmp_path):
    bare = _bare_repo(tmp_path)
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    async with rdev_server.client() as api:
        name = await _ssh_project_with_worker(
            api,
            rdev_server,
            sshd.url(bare),
            {"RDEV_COMMAND_AGENT": "true", "RDEV_GIT_SSH_COMMAND": sshd.ssh_command(stranger)},
        )
        r = await api.post(f"/projects/{name}/builds", json={"prompt": "x"})
        build = await wait_for_status(api, r.json()["task_id"], {"completed", "failed"})
        events = (await api.get(f"/builds/{r.json()['task_id']}/events")).json()
    assert build["status"] == "failed"
    assert "clone failed" in build["result"]["error"]
    # Fast: BatchMode refused at once on the first attempt (a prompt would have hung the
    # clone until the build's timeout, far past the wait above); not retried.
    assert build["attempts"] == 1
    assert [e["to"] for e in events] == ["pending", "running", "failed"]
