"""The README's first build, run literally, so the README cannot drift from what works.

The two ``<!-- quickstart: ... -->`` shell blocks are read out of README.md and run with
bash in a copy of the repository's files (what a fresh clone holds, plus work not yet
committed): ``serve`` starts ``./scripts/serve`` (which makes its own venv and installs
rdev into it) with no RDEV_* variable but the ones the block sets; ``build`` runs with the
printed bootstrap token as ``$TOKEN``. Only the port differs from the README, so parallel
test runs do not collide: ``8080`` becomes a free loopback port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import Proc, free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
BLOCK_RE = re.compile(r"<!-- quickstart: (\w+) -->\s*```(?:sh|bash)\n(.*?)```", re.S)
BOOTSTRAP_RE = re.compile(r"bootstrap admin token \(shown only once\):\s+(\S+)")


def quickstart_blocks(readme: str) -> dict[str, str]:
    return {name: body for name, body in BLOCK_RE.findall(readme)}


def copy_checkout(dest: Path) -> None:
    """The files a clone would have (and uncommitted, not-ignored ones): no venv, no cache."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = ROOT / rel
        if not src.is_file():  # deleted in the work tree but still in the index
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def newcomer_env(home: Path) -> dict[str, str]:
    """A shell as a newcomer's: no RDEV_* settings, no agent keys, a HOME of their own."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR") + tuple(
        k for k in os.environ if k.startswith("PIP_")
    )
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1", GIT_TERMINAL_PROMPT="0")
    return env


@pytest.fixture
def readme_blocks() -> dict[str, str]:
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    assert set(blocks) >= {"serve", "build"}, f"README quick-start blocks missing: {blocks}"
    return blocks


def test_the_readme_first_build_completes_and_pushes_a_commit(
    readme_blocks: dict[str, str], tmp_path: Path
) -> None:
    clone, home = tmp_path / "rdev", tmp_path / "home"
    clone.mkdir()
    home.mkdir()
    copy_checkout(clone)
    port = free_port()
    env = newcomer_env(home)

    serve = Proc(
        ["bash", "-euo", "pipefail", "-c", f'cd "{clone}"\n' + readme_blocks["serve"]],
        {**env, "RDEV_PORT": str(port)},
        tmp_path / "serve.log",
    )
    serve.start()
    try:
        token = wait_for_bootstrap_token(serve, port)
        build_script = readme_blocks["build"].replace("localhost:8080", f"localhost:{port}")
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", build_script],
            cwd=clone,
            env={**env, "TOKEN": token},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n{serve_log(serve)}"
        # `rdev build show` prints the build; the README promises `completed`
        assert "completed" in run.stdout, run.stdout
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        builds = api.get("/builds").json()
        items = builds["items"]
        assert len(items) == 1, items
        build = items[0]
        assert build["status"] == "completed", build
        assert build["result"]["commit_sha"], build

        demo = clone / "demo"
        page = (demo / "pages" / "about.html").read_text()
        assert "<h1>About</h1>" in page and "add an about page" in page
        head = git_out(demo, "log", "-1", "--format=%H%n%B")
        assert head.splitlines()[0] == build["result"]["commit_sha"]
        assert f"Build-Id: {build['task_id']}" in head
    finally:
        serve.stop()


def wait_for_bootstrap_token(serve: Proc, port: int) -> str:
    """The token the first start prints, once the server answers (the install comes first)."""
    deadline = time.monotonic() + 600  # a fresh venv install; only a failure waits this long
    while time.monotonic() < deadline:
        if not serve.alive():
            raise AssertionError(f"./scripts/serve exited:\n{serve_log(serve)}")
        found = BOOTSTRAP_RE.search(serve_log(serve))
        if found:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return found.group(1)
            except httpx.HTTPError:
                pass
        time.sleep(0.2)
    raise AssertionError(f"no bootstrap token printed:\n{serve_log(serve)}")


def serve_log(serve: Proc) -> str:
    return serve.log_path.read_text(errors="replace")[-4000:]


def git_out(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
