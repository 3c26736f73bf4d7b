"""GiteaRepoHost against the spec-checking fake Gitea (real HTTP, real git pushes)."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rdev.adapters.repohost.gitea import GiteaRepoHost
from rdev.domain.errors import (
    Conflict,
    DomainError,
    UpstreamFailed,
    UpstreamTimeout,
    ValidationFailed,
)
from tests.fixtures.fake_gitea import FakeGitea, running_fake_gitea


@pytest.fixture
def fake_gitea(tmp_path: Path) -> Iterator[FakeGitea]:
    with running_fake_gitea(tmp_path / "gitea") as fake:
        yield fake


def host(fake: FakeGitea, **kw: object) -> GiteaRepoHost:
    return GiteaRepoHost(fake.base_url, fake.token, **kw)  # type: ignore[arg-type]


def assert_no_token(fake: FakeGitea, exc: DomainError) -> None:
    b64 = base64.b64encode(f"x-access-token:{fake.token}".encode()).decode().rstrip("=")
    for text in (str(exc), exc.detail, repr(exc.extra)):
        assert fake.token not in text
        assert b64 not in text


@pytest.fixture
def scaffold(tmp_path: Path) -> Path:
    d = tmp_path / "scaffold"
    (d / "src").mkdir(parents=True)
    (d / "README.md").write_text("# from scaffold\n")
    (d / "src" / "app.py").write_text("print('hi')\n")
    return d


async def test_create_user_repo_without_scaffold_is_auto_initialised(fake_gitea: FakeGitea):
    created = await host(fake_gitea).create("svc", "main", {"private": True}, None)

    assert created.clone_url == f"{fake_gitea.base_url}/rdev-bot/svc.git"
    assert created.web_url == f"{fake_gitea.base_url}/rdev-bot/svc"
    assert created.credential is not None
    assert created.credential.get_secret_value() == fake_gitea.token
    assert fake_gitea.operations() == ["createCurrentUserRepo"]
    assert fake_gitea.requests[0].body == {
        "name": "svc", "default_branch": "main", "private": True, "auto_init": True
    }  # fmt: skip
    assert fake_gitea.requests[0].authorization == f"token {fake_gitea.token}"
    assert fake_gitea.read("rdev-bot", "svc", "README.md") is not None  # clonable branch
    assert fake_gitea.violations == []


async def test_create_org_repo_pushes_scaffold_as_first_commit(
    fake_gitea: FakeGitea, scaffold: Path
):
    created = await host(fake_gitea).create("web", "trunk", {"owner": "acme"}, scaffold)

    assert created.clone_url == f"{fake_gitea.base_url}/acme/web.git"
    assert fake_gitea.operations() == ["createOrgRepo"]
    assert fake_gitea.requests[0].body["auto_init"] is False
    assert fake_gitea.read("acme", "web", "README.md", "trunk") == "# from scaffold\n"
    assert fake_gitea.read("acme", "web", "src/app.py", "trunk") == "print('hi')\n"
    assert fake_gitea.log("acme", "web", "trunk") == ["Initial commit from template"]
    assert list(scaffold.iterdir()) and not (scaffold / ".git").exists()  # left untouched
    assert fake_gitea.violations == []


async def test_owner_equal_to_username_creates_a_user_repo(fake_gitea: FakeGitea):
    await host(fake_gitea, username="rdev-bot").create("mine", "main", {"owner": "rdev-bot"}, None)

    assert fake_gitea.operations() == ["createCurrentUserRepo"]
    assert "rdev-bot/mine" in fake_gitea.repos
    assert fake_gitea.violations == []


async def test_generate_from_template_repo_then_push_scaffold_on_top(
    fake_gitea: FakeGitea, scaffold: Path
):
    fake_gitea.add_repo(
        "acme", "tpl", {"LICENSE": "MIT\n", "README.md": "# template\n"}, template=True
    )
    options = {"owner": "acme", "template_repo": "acme/tpl", "description": "made by rdev"}

    created = await host(fake_gitea).create("gen", "main", options, scaffold)

    assert created.clone_url == f"{fake_gitea.base_url}/acme/gen.git"
    assert fake_gitea.operations() == ["generateRepo"]
    body = fake_gitea.requests[0].body
    assert body["owner"] == "acme" and body["name"] == "gen" and body["git_content"] is True
    assert fake_gitea.read("acme", "gen", "LICENSE") == "MIT\n"  # from the template repo
    assert fake_gitea.read("acme", "gen", "README.md") == "# from scaffold\n"  # scaffold wins
    assert fake_gitea.log("acme", "gen") == ["Initial commit from template", "init"]
    assert fake_gitea.violations == []


async def test_generate_without_owner_is_refused_before_calling_gitea(fake_gitea: FakeGitea):
    with pytest.raises(ValidationFailed) as err:
        await host(fake_gitea).create("gen", "main", {"template_repo": "acme/tpl"}, None)
    assert err.value.field == "options.owner"
    assert fake_gitea.requests == []


async def test_name_taken_maps_to_conflict(fake_gitea: FakeGitea):
    fake_gitea.add_repo("acme", "taken", {"a.txt": "x"})

    with pytest.raises(Conflict) as err:
        await host(fake_gitea).create("taken", "main", {"owner": "acme"}, None)

    assert "already" in err.value.detail and err.value.status == 409
    assert_no_token(fake_gitea, err.value)
    assert fake_gitea.violations == []


@pytest.mark.parametrize("name", ["notes.wiki", "blocked"])
async def test_name_gitea_refuses_maps_to_validation_failed(fake_gitea: FakeGitea, name: str):
    fake_gitea.reject_names.add("blocked")

    with pytest.raises(ValidationFailed) as err:
        await host(fake_gitea).create(name, "main", {}, None)

    assert err.value.status == 422 and "not allowed" in err.value.detail
    assert_no_token(fake_gitea, err.value)
    assert fake_gitea.violations == []


async def test_unknown_org_maps_to_validation_failed(fake_gitea: FakeGitea):
    with pytest.raises(ValidationFailed) as err:
        await host(fake_gitea).create("x", "main", {"owner": "nope"}, None)
    assert "nope" in err.value.detail
    assert fake_gitea.violations == []


async def test_names_that_could_escape_the_url_path_are_refused_locally(fake_gitea: FakeGitea):
    for name, options in [("../admin", {}), ("ok", {"owner": "a/b"}), ("ok", {"owner": ".."})]:
        with pytest.raises(ValidationFailed):
            await host(fake_gitea).create(name, "main", options, None)
    assert fake_gitea.requests == []


async def test_rejected_token_maps_to_upstream_failed_without_the_token(fake_gitea: FakeGitea):
    bad = GiteaRepoHost(fake_gitea.base_url, "wrong_" + fake_gitea.token)

    with pytest.raises(UpstreamFailed) as err:
        await bad.create("svc", "main", {}, None)

    assert "token rejected" in err.value.detail and err.value.status == 502
    assert "wrong_" not in err.value.detail
    assert_no_token(fake_gitea, err.value)
    assert "wrong_" not in repr(bad)
    assert fake_gitea.violations == []


async def test_forbidden_org_maps_to_upstream_failed(fake_gitea: FakeGitea):
    fake_gitea.forbidden_orgs.add("acme")
    with pytest.raises(UpstreamFailed) as err:
        await host(fake_gitea).create("svc", "main", {"owner": "acme"}, None)
    assert "403" in err.value.detail
    assert fake_gitea.violations == []


async def test_failed_scaffold_push_deletes_the_new_repo(fake_gitea: FakeGitea, scaffold: Path):
    fake_gitea.refuse_git_push = True

    with pytest.raises(UpstreamFailed) as err:
        await host(fake_gitea).create("svc", "main", {"owner": "acme"}, scaffold)

    assert "scaffold" in err.value.detail
    assert_no_token(fake_gitea, err.value)
    assert fake_gitea.operations() == ["createOrgRepo", "repoDelete"]
    assert "acme/svc" not in fake_gitea.repos
    assert fake_gitea.violations == []


async def test_delete_removes_the_repo_and_is_idempotent(fake_gitea: FakeGitea):
    fake_gitea.add_repo("acme", "old", {"a.txt": "x"})
    gitea = host(fake_gitea)

    await gitea.delete("old", {"owner": "acme"})
    await gitea.delete("old", {"owner": "acme"})  # already gone: still fine (rollback path)

    assert "acme/old" not in fake_gitea.repos
    assert not fake_gitea.bare_path("acme", "old").exists()
    assert fake_gitea.operations() == ["repoDelete", "repoDelete"]
    assert fake_gitea.violations == []


async def test_delete_needs_an_owner(fake_gitea: FakeGitea):
    with pytest.raises(ValidationFailed):
        await host(fake_gitea).delete("old", {})
    await host(fake_gitea, username="rdev-bot").delete("old", {})  # username is the default
    assert fake_gitea.operations() == ["repoDelete"]


async def test_unreachable_gitea_maps_to_upstream_failed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    gitea = GiteaRepoHost(f"http://127.0.0.1:{port}", "secret_token_value", timeout=2)

    with pytest.raises(UpstreamFailed) as err:
        await gitea.create("svc", "main", {}, None)

    assert "unreachable" in err.value.detail
    assert "secret_token_value" not in str(err.value)


async def test_slow_gitea_maps_to_upstream_timeout(fake_gitea: FakeGitea):
    # 5 s against a 0.2 s timeout: the timeout surely ends the call first on a loaded
    # machine (the fake's stop waits out the handler, so not longer).
    fake_gitea.delay = 5.0
    with pytest.raises(UpstreamTimeout) as err:
        await host(fake_gitea, timeout=0.2).create("svc", "main", {}, None)
    assert err.value.status == 504
    assert_no_token(fake_gitea, err.value)


async def test_fake_gitea_flags_requests_outside_the_spec(fake_gitea: FakeGitea):
    """The contract check itself can fail: an unknown field and a bad scheme are recorded."""
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{fake_gitea.base_url}/api/v1/user/repos?token=x",
            json={"name": "x", "colour": "blue"},
            headers={"Authorization": f"Basic {fake_gitea.token}"},
        )
    assert r.status_code == 401
    joined = "\n".join(fake_gitea.violations)
    assert "colour" in joined and "query string" in joined and "Authorization" in joined
