"""GitSmartHTTPApp (auth, routing, CGI bridge) and LocalRepoHost, over a real server."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import httpx
import pytest

from rdev.adapters.git import GitCLI
from rdev.adapters.repohost.git_http import (
    GitSmartHTTPApp,
    InvalidRepoName,
    token_from_authorization,
    validate_repo_name,
)
from rdev.adapters.repohost.local import LocalRepoHost
from rdev.domain.errors import Conflict, ValidationFailed
from rdev.ports.git import GitAuthor
from tests.fixtures.git_server import GitServer, git, init_bare
from tests.fixtures.git_server import git_server as git_server_fixture

git_server = git_server_fixture  # the fixture, under its own name


def basic(user: str, password: str = "") -> dict[str, str]:
    value = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {value}"}


def info_refs(server: GitServer, repo: str, service: str = "git-upload-pack") -> str:
    return f"{server.url_for(repo)}/info/refs?service={service}"


# ----------------------------------------------------------------------- auth


async def test_request_without_token_is_401_with_basic_challenge(git_server):
    git_server.make_repo("demo")
    async with httpx.AsyncClient() as client:
        response = await client.get(info_refs(git_server, "demo"))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Basic realm="rdev"'


async def test_unknown_token_is_401(git_server):
    git_server.make_repo("demo")
    async with httpx.AsyncClient() as client:
        response = await client.get(
            info_refs(git_server, "demo"), headers=basic("x-access-token", "nope-nope")
        )
    assert response.status_code == 401


async def test_token_the_callback_rejects_for_writing_is_403(git_server):
    git_server.make_repo("demo")
    ro = basic("x-access-token", git_server.read_only_token)
    async with httpx.AsyncClient() as client:
        push = await client.get(info_refs(git_server, "demo", "git-receive-pack"), headers=ro)
        fetch = await client.get(info_refs(git_server, "demo"), headers=ro)
    assert push.status_code == 403
    assert fetch.status_code == 200
    assert (git_server.read_only_token, "demo", True, False) in git_server.requests


@pytest.mark.parametrize(
    "headers_for",
    [
        lambda t: basic("x-access-token", t),
        lambda t: basic(t, ""),
        lambda t: {"Authorization": f"Bearer {t}"},
    ],
    ids=["basic-password", "basic-username-only", "bearer"],
)
async def test_token_is_read_from_basic_password_username_or_bearer(git_server, headers_for):
    git_server.make_repo("demo")
    async with httpx.AsyncClient() as client:
        response = await client.get(
            info_refs(git_server, "demo"), headers=headers_for(git_server.token)
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-advertisement"
    assert b"refs/heads/main" in response.content


def test_token_from_authorization_header_forms():
    assert token_from_authorization(None) is None
    assert token_from_authorization("Basic !!!notbase64") is None
    assert token_from_authorization(basic("u", "p")["Authorization"]) == "p"
    assert token_from_authorization(basic("tok")["Authorization"]) == "tok"
    assert token_from_authorization("Bearer abc") == "abc"
    assert token_from_authorization("Digest abc") is None


# -------------------------------------------------------------------- routing


async def test_path_traversal_is_refused_and_never_reaches_authorize(git_server, tmp_path):
    init_bare(git_server.root.parent / "secret.git")
    headers = basic("x-access-token", git_server.token)
    base = git_server.base_url
    async with httpx.AsyncClient() as client:
        for path in (
            "/git/..%2Fsecret.git/info/refs?service=git-upload-pack",
            "/git/%2e%2e/secret.git/info/refs?service=git-upload-pack",
            "/git/demo.git/..%2F..%2Fsecret.git/info/refs?service=git-upload-pack",
        ):
            response = await client.get(base + path, headers=headers)
            assert response.status_code == 404, path
    assert git_server.requests == []


async def call_asgi(app, path: str, method: str = "GET", query: bytes = b"") -> int:
    """Send one request with an exact, un-normalised ``path`` to an ASGI app; its status."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"authorization", b"Bearer anything")],
    }
    await app(scope, receive, send)
    return sent[0]["status"]


async def test_traversal_in_a_raw_asgi_path_is_refused(tmp_path):
    root = tmp_path / "repos"
    root.mkdir()
    init_bare(tmp_path / "secret.git")
    calls: list[str] = []

    async def allow_all(token, repo, is_write):
        calls.append(repo)
        return True

    app = GitSmartHTTPApp(root, allow_all)
    query = b"service=git-upload-pack"
    assert await call_asgi(app, "/../secret.git/info/refs", query=query) == 404
    assert await call_asgi(app, "/./../secret.git/git-upload-pack", "POST") == 404
    assert await call_asgi(app, "/x.git/../../secret.git/git-upload-pack", "POST") == 404
    assert await call_asgi(app, "/..%2Fsecret.git/info/refs", query=query) == 404
    assert await call_asgi(app, "/...git/info/refs", query=query) == 404
    assert calls == []


@pytest.mark.parametrize("name", ["..", ".hidden", "a/b", "a..b", "x.git", "", "a b", "-x"])
def test_validate_repo_name_rejects_unsafe_names(name):
    with pytest.raises(InvalidRepoName):
        validate_repo_name(name)


async def test_unknown_repository_and_dumb_protocol_paths_are_404(git_server):
    git_server.make_repo("demo")
    headers = basic("x-access-token", git_server.token)
    async with httpx.AsyncClient() as client:
        missing = await client.get(info_refs(git_server, "nope"), headers=headers)
        dumb = await client.get(f"{git_server.url_for('demo')}/HEAD", headers=headers)
        no_service = await client.get(f"{git_server.url_for('demo')}/info/refs", headers=headers)
    assert (missing.status_code, dumb.status_code, no_service.status_code) == (404, 404, 404)


async def test_gzip_request_body_is_inflated_by_the_backend(git_server):
    git_server.make_repo("demo")
    sha = git_server.head("demo")

    def pkt(line: str) -> bytes:
        return f"{len(line) + 4:04x}{line}".encode()

    body = pkt(f"want {sha}\n") + b"0000" + pkt("done\n")
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{git_server.url_for('demo')}/git-upload-pack",
            content=gzip.compress(body),
            headers={
                **basic("x-access-token", git_server.token),
                "Content-Type": "application/x-git-upload-pack-request",
                "Content-Encoding": "gzip",
            },
        )
    assert response.status_code == 200
    assert b"PACK" in response.content


async def test_plain_git_clone_and_push_through_the_app(git_server, tmp_path):
    git_server.make_repo("demo", {"a.txt": "a\n"})
    header = f"http.extraHeader=Authorization: Bearer {git_server.token}"
    work = tmp_path / "w"
    git("-c", header, "clone", "-q", git_server.url_for("demo"), str(work))
    (work / "b.txt").write_text("b\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "b", cwd=work)
    git("-c", header, "push", "-q", "origin", "HEAD:main", cwd=work)
    assert git_server.read("demo", "b.txt") == "b\n"


# ------------------------------------------------------------ LocalRepoHost


async def test_local_repo_host_creates_repo_with_scaffold_served_over_http(git_server, tmp_path):
    host = LocalRepoHost(git_server.root, git_server.base_url)
    scaffold = tmp_path / "tpl"
    (scaffold / "src").mkdir(parents=True)
    (scaffold / "README.md").write_text("# from template\n")
    (scaffold / "src" / "main.py").write_text("print('hi')\n")

    created = await host.create("proj", "trunk", {}, scaffold)

    assert created.clone_url == git_server.url_for("proj")
    assert git_server.read("proj", "src/main.py", "trunk") == "print('hi')\n"
    gitcli = GitCLI(timeout=30)
    work = tmp_path / "w"
    sha = await gitcli.clone(created.clone_url, work, "trunk", "trunk", git_server.token)
    assert sha == git_server.head("proj", "trunk")
    assert (work / "README.md").read_text() == "# from template\n"
    assert not list(scaffold.glob(".git*"))  # the template dir is left untouched
    (work / "more.txt").write_text("more\n")
    await gitcli.commit(work, "more", GitAuthor())
    assert await gitcli.push(work, "trunk", git_server.token) == git_server.head("proj", "trunk")


async def test_local_repo_host_without_scaffold_creates_an_empty_repo(git_server, tmp_path):
    host = LocalRepoHost(git_server.root, git_server.base_url + "/")
    created = await host.create("blank", "main", {}, None)
    assert created.clone_url == git_server.url_for("blank")
    assert git("symbolic-ref", "HEAD", cwd=git_server.bare_path("blank")).strip() == (
        "refs/heads/main"
    )
    assert git_server.head("blank") is None
    work: Path = tmp_path / "w"
    assert await GitCLI().clone(created.clone_url, work, "main", "main", git_server.token) == ""


async def test_local_repo_host_refuses_duplicates_and_bad_names_and_deletes(git_server):
    host = LocalRepoHost(git_server.root, git_server.base_url)
    await host.create("dup", "main", {}, None)
    with pytest.raises(Conflict):
        await host.create("dup", "main", {}, None)
    with pytest.raises(ValidationFailed):
        await host.create("../escape", "main", {}, None)
    await host.delete("dup", {})
    assert not git_server.bare_path("dup").exists()
    await host.delete("dup", {})  # idempotent
