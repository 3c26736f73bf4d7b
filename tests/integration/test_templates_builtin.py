"""The built-in templates scaffold projects that really run: tests pass, sites build and serve."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rdev.adapters.templates import FolderTemplateProvider, builtin_templates_dir

PROJECT = {"name": "demo-app", "repo_url": "http://127.0.0.1/demo.git", "default_branch": "main"}


def provider() -> FolderTemplateProvider:
    return FolderTemplateProvider([builtin_templates_dir()])


def clean_env(**extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, deadline: float = 60.0) -> tuple[int, bytes]:
    """GET with retries until the server accepts connections (or the deadline passes: only
    a failure waits that long)."""
    end = time.monotonic() + deadline
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except ConnectionRefusedError:
            if time.monotonic() > end:
                raise
            time.sleep(0.05)
        finally:
            conn.close()


@contextmanager
def process(args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_blank_scaffolds_a_readme_with_the_project_name(tmp_path: Path):
    provider().scaffold("blank", tmp_path, {"description": "Just a test."}, PROJECT)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# demo-app\n") and "Just a test." in readme


def test_python_service_tests_pass_and_the_service_answers(tmp_path: Path):
    provider().scaffold("python-service", tmp_path, {"service_name": 'clock "svc"'}, PROJECT)

    tests = subprocess.run(
        [sys.executable, "-m", "unittest", "-v"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tests.returncode == 0, tests.stderr
    assert "Ran 3 tests" in tests.stderr

    port = free_port()
    with process([sys.executable, "-m", "service"], tmp_path, clean_env(PORT=str(port))):
        status, body = get(port, "/health")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "service": 'clock "svc"'}


def test_python_service_renders_port_and_a_valid_pyproject(tmp_path: Path):
    provider().scaffold("python-service", tmp_path, {"port": 9123}, PROJECT)

    assert "DEFAULT_PORT = 9123" in (tmp_path / "service" / "app.py").read_text()
    meta = tomllib.loads((tmp_path / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "demo-app"
    assert (tmp_path / ".gitignore").is_file()


def test_static_site_builds_into_dist_and_serves(tmp_path: Path):
    provider().scaffold("static-site", tmp_path, {"site_title": "Tom & Jerry"}, PROJECT)

    build = subprocess.run(
        [sys.executable, "build.py"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert build.returncode == 0, build.stderr
    index = (tmp_path / "dist" / "index.html").read_text()
    assert "<title>Home | Tom &amp; Jerry</title>" in index
    assert "<h1>Welcome to Tom &amp; Jerry</h1>" in index
    assert (tmp_path / "dist" / "static" / "style.css").is_file()

    own_tests = subprocess.run(
        [sys.executable, "-m", "unittest"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert own_tests.returncode == 0, own_tests.stderr

    port = free_port()
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", "dist"]
    with process(args, tmp_path, clean_env()):
        status, body = get(port, "/index.html")
    assert status == 200 and b"Welcome to Tom &amp; Jerry" in body


def test_builtin_prompts_wrap_the_task(tmp_path: Path):
    for name in ("python-service", "static-site"):
        rendered = provider().render_prompt(name, "Add a contact page.", {}, PROJECT)
        assert rendered.prompt.rstrip().endswith("Add a contact page.")
        assert "demo-app" in rendered.prompt
        assert not re.search(r"\{\{|\{%", rendered.prompt)
