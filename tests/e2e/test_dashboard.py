"""The web dashboard at /ui.

In a real headless Chromium (Debian's, driven by Playwright) against a real `rdev serve`
and a real `rdev worker`: sign in, watch a running build's log lines arrive, cancel it
from the page, see it cancelled; a prompt with markup shows as text. Plus quick checks
over ASGI of the sign-in cookie, CSRF, CSP and escaping.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import ADMIN_TOKEN
from tests.factories import create_project, register_worker, submit
from tests.fixtures.git_server import git_server as git_server_fixture
from tests.fixtures.processes import RdevServer, wait_for_status
from tests.fixtures.processes import rdev_server as rdev_server_fixture

git_server = git_server_fixture
rdev_server = rdev_server_fixture

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: Prints a line every 0.3 s until it is cancelled: the build is surely still running
#: while the page is watched, however slow the machine.
SLOW_AGENT = "i=0; while true; do i=$((i + 1)); echo line $i; sleep 0.3; done"
#: Playwright waits: only a failure waits this long.
UI_WAIT_MS = 60_000
EVIL_PROMPT = (
    'Fix it <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2"> & "quotes"'
)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        if os.environ.get("RDEV_REQUIRE_BROWSER") == "1":
            pytest.fail(
                f"RDEV_REQUIRE_BROWSER=1 but {CHROMIUM} is missing "
                "(scripts/setup.d/40-browser.sh installs it)"
            )
        pytest.skip(f"{CHROMIUM} missing: run scripts/setup.d/40-browser.sh")
    from playwright.async_api import async_playwright

    pw = await async_playwright().start()
    b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    try:
        yield b
    finally:
        await b.close()
        await pw.stop()


@pytest.mark.e2e
async def test_sign_in_watch_live_log_cancel_and_prompt_is_text(
    rdev_server: RdevServer, git_server: Any, browser: Any, backend: str
) -> None:
    name = "ui-" + uuid.uuid4().hex[:8]
    url = git_server.make_repo(name, {"README.md": "hi\n"})
    async with rdev_server.client() as api:
        r = await api.post(
            "/projects", json={"name": name, "repo_url": url, "git_credential": git_server.token}
        )
        assert r.status_code == 201, r.text
        rdev_server.start_worker(
            await rdev_server.token(["workers:run"]), env={"RDEV_COMMAND_AGENT": SLOW_AGENT}
        )
        user = await rdev_server.token(["builds:read", "builds:write", "projects:read"])
        r = await api.post(f"/projects/{name}/builds", json={"prompt": EVIL_PROMPT})
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        await wait_for_status(api, task_id, {"running"})

        context = await browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(UI_WAIT_MS)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        visited: list[str] = []
        page.on("request", lambda req: visited.append(req.url))

        await page.goto(rdev_server.url + "/ui/builds/" + task_id)
        assert page.url.endswith("/ui/login")  # not signed in yet
        await page.fill("#token", user)
        await page.click("#login-form button[type=submit]")
        await page.wait_for_url(re.compile(r".*/ui/builds$"))
        row = page.locator(f'tr[data-task-id="{task_id}"]')
        await row.wait_for()
        assert "<script>" in (await row.locator("td.prompt").text_content() or "")

        await page.goto(rdev_server.url + "/ui/builds/" + task_id)
        log = page.locator("#log")
        lines_now = log.locator(".line")
        seen_first = await until_count(lines_now, 2)
        # More lines arrive while the page stays open: the log is live.
        await until_count(lines_now, seen_first + 3)
        lines = await log.locator(".line").all_text_contents()
        numbers = [int(t.split()[1]) for t in lines if t.startswith("line ")]
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))), lines
        assert (await page.text_content("#status")) == "running"
        assert (await page.text_content("#prompt")) == EVIL_PROMPT
        assert await page.evaluate("typeof window.__xss") == "undefined"
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(
            path=str(ARTIFACTS / f"dashboard-build-running-{backend}.png"), full_page=True
        )

        await page.click("#cancel")
        await expect(page.locator("#status")).to_have_text("cancelled", timeout=UI_WAIT_MS)
        # The agent never ends on its own: only the cancel stopped it.
        build = await wait_for_status(api, task_id, {"cancelled"})
        assert build["status"] == "cancelled"
        await page.wait_for_selector("#result-success", timeout=UI_WAIT_MS)
        assert (await page.text_content("#status")) == "cancelled"
        await page.screenshot(
            path=str(ARTIFACTS / f"dashboard-build-cancelled-{backend}.png"), full_page=True
        )

        for path in ("/ui/workers", "/ui/projects"):
            await page.goto(rdev_server.url + path)
            assert await page.locator("main table tbody tr").count() >= 1
        await page.goto(rdev_server.url + "/ui/builds?status=cancelled")
        await page.locator(f'tr[data-task-id="{task_id}"]').wait_for()

        assert errors == [], errors
        assert not any(user in u for u in visited), "the token must never be in a URL"
        await context.close()


async def until_count(locator: Any, n: int, timeout: float = 60.0) -> int:
    """Poll from the test side (the page's CSP forbids Playwright's in-page eval polling)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        count = int(await locator.count())
        if count >= n:
            return count
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {count} of {n} elements after {timeout}s")
        await asyncio.sleep(0.1)


# -- over ASGI, no browser ---------------------------------------------------------------------
async def sign_in(client: httpx.AsyncClient, token: str = ADMIN_TOKEN) -> httpx.Response:
    return await client.post(
        "/ui/login",
        content=f"token={token}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


async def test_sign_in_sets_an_httponly_strict_cookie_and_pages_need_it(
    client: httpx.AsyncClient,
) -> None:
    client.headers.pop("authorization")
    r = await client.get("/ui/builds")
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    r = await sign_in(client, "wrong")
    assert r.status_code == 401 and "not accepted" in r.text
    r = await sign_in(client)
    assert r.status_code == 303 and r.headers["location"] == "/ui/builds"
    cookie = r.headers["set-cookie"]
    for attr in ("HttpOnly", "SameSite=strict", "Path=/ui"):
        assert attr.lower() in cookie.lower(), cookie
    assert ADMIN_TOKEN not in r.headers["location"]
    r = await client.get("/ui/builds")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    for path in ("/ui/workers", "/ui/projects", "/ui/static/app.js", "/ui/static/style.css"):
        assert (await client.get(path)).status_code == 200, path


async def test_pages_escape_what_bots_and_agents_wrote(client: httpx.AsyncClient) -> None:
    project = await create_project(client, name="p-" + uuid.uuid4().hex[:6])
    build = await submit(client, project["id"], prompt=EVIL_PROMPT)
    await sign_in(client)
    for path in ("/ui/builds", f"/ui/builds/{build['task_id']}", "/ui/builds/rows"):
        html = (await client.get(path)).text
        assert "<script>window.__xss" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html, path


async def test_build_page_shows_result_files_commit_and_audit_trail(
    client: httpx.AsyncClient,
) -> None:
    project = await create_project(client)
    task_id = (await submit(client, project["id"]))["task_id"]
    worker = await register_worker(client)
    lease = (
        await client.post(f"/workers/{worker}/claim", json={"max_tasks": 1, "wait_seconds": 5})
    ).json()[0]["lease_token"]
    result = {
        "success": True,
        "output": "agent said <b>done</b>",
        "commit_sha": "a" * 40,
        "duration_ms": 4200,
        "files_changed": [
            {"path": "src/<evil>.py", "change": "added"},
            {"path": "README.md", "change": "modified"},
        ],
    }
    r = await client.post(
        f"/workers/{worker}/complete/{task_id}",
        json={"lease_token": lease, "result": result, "agent_info": {"pushed": True}},
    )
    assert r.status_code == 200, r.text
    await sign_in(client)
    r = await client.get(f"/ui/builds/{task_id}")
    assert r.status_code == 200, r.text
    html = r.text
    assert 'data-final="true"' in html
    assert "a" * 40 in html and "(pushed)" in html
    assert "src/&lt;evil&gt;.py" in html and "README.md" in html
    assert "agent said &lt;b&gt;done&lt;/b&gt;" in html
    for status in ("pending", "running", "completed"):
        assert f"<td>{status}</td>" in html
    r = await client.get("/ui/builds/nope")
    assert r.status_code == 404 and "no build" in r.text


async def test_cancel_form_needs_the_csrf_token(client: httpx.AsyncClient) -> None:
    project = await create_project(client)
    task_id = (await submit(client, project["id"]))["task_id"]
    await sign_in(client)
    form = {"content-type": "application/x-www-form-urlencoded"}
    r = await client.post(f"/ui/builds/{task_id}/cancel", content="csrf=forged", headers=form)
    assert r.status_code == 403
    assert (await client.get(f"/builds/{task_id}")).json()["status"] == "pending"
    page = (await client.get(f"/ui/builds/{task_id}")).text
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert csrf
    r = await client.post(
        f"/ui/builds/{task_id}/cancel",
        content=f"csrf={csrf.group(1)}",
        headers={**form, "origin": "http://evil.example"},
    )
    assert r.status_code == 403
    r = await client.post(
        f"/ui/builds/{task_id}/cancel", content=f"csrf={csrf.group(1)}", headers=form
    )
    assert r.status_code == 303
    assert (await client.get(f"/builds/{task_id}")).json()["status"] == "cancelled"


def test_chromium_is_installed_when_required() -> None:
    if os.environ.get("RDEV_REQUIRE_BROWSER") == "1":
        assert shutil.which("chromium") or os.path.exists(CHROMIUM)
