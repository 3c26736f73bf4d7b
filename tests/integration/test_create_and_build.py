"""POST /project/create-and-build on the local host and on a (spec-checking) fake Gitea, the git
access rules of the /git server, and the per-task git credential of local-host claims."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rdev.api.app import create_app
from rdev.bootstrap import Container, build_container
from rdev.config import Settings
from rdev.domain.errors import UpstreamFailed
from tests.conftest import ADMIN_TOKEN, make_token, run_out_lease_clock
from tests.factories import create_project, register_worker
from tests.fixtures.fake_gitea import FakeGitea, running_fake_gitea

SCAFFOLD_MESSAGE = "Initial commit from template"


@pytest.fixture
def fake_gitea(tmp_path: Path) -> Iterator[FakeGitea]:
    with running_fake_gitea(tmp_path / "gitea") as fake:
        yield fake


@pytest.fixture
def templates_dir(tmp_path: Path) -> Path:
    d = tmp_path / "templates"
    d.mkdir()
    return d


@pytest.fixture
def settings(settings: Settings, fake_gitea: FakeGitea, templates_dir: Path) -> Settings:
    return settings.model_copy(
        update={
            "gitea_url": fake_gitea.base_url,
            "gitea_token": fake_gitea.token,
            "templates_dir": templates_dir,
            "public_url": "http://rdev.test",
        }
    )


def name() -> str:
    return "p-" + uuid.uuid4().hex[:8]


def repos_dir(container: Container) -> Path:
    return container.repo_hosts["local"].repos_dir  # type: ignore[no-any-return]


def git_log(bare: Path, branch: str = "main") -> list[str]:
    out = subprocess.run(
        ["git", "--git-dir", str(bare), "log", "--format=%s", branch],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(bare)},
    )
    return out.stdout.splitlines()


def git_show(bare: Path, spec: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), "show", spec],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(bare)},
    ).stdout


def body(project_name: str, **project: Any) -> dict[str, Any]:
    build = project.pop("build", {})
    return {
        "project": {"name": project_name, **project},
        "build": {"prompt": "make it better", "agent": "command", **build},
    }


async def assert_nothing_left(client: httpx.AsyncClient, container: Container, pname: str) -> None:
    assert (await client.get(f"/projects/{pname}")).status_code == 404
    assert not (repos_dir(container) / f"{pname}.git").exists()
    builds = (await client.get("/builds")).json()["items"]
    assert all(b["project"] != pname for b in builds)


# -- local host ---------------------------------------------------------------------------------


async def test_create_and_build_on_local_host_makes_scaffolded_repo_project_and_build(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    r = await client.post(
        "/project/create-and-build",
        json=body(pname, template="python-service", variables={"service_name": "clock"}),
    )

    assert r.status_code == 201, r.text
    out = r.json()
    assert out["project"]["name"] == pname
    assert out["project"]["repo_url"] == f"http://rdev.test/git/{pname}.git"
    assert out["project"]["has_git_credential"] is False  # the server keeps no credential
    assert out["status"] == "pending"
    assert out["links"]["build"] == f"/builds/{out['task_id']}"
    assert r.headers["location"] == f"/projects/{out['project']['id']}"
    bare = repos_dir(container) / f"{pname}.git"
    assert git_log(bare) == [SCAFFOLD_MESSAGE]
    assert "clock" in git_show(bare, "main:README.md")
    assert "8000" in git_show(bare, "main:service/app.py")
    build = (await client.get(f"/builds/{out['task_id']}")).json()
    assert build["template"] == {"name": "python-service", "version": "1.0.0"}
    assert "You are working on clock" in build["rendered_prompt"]
    assert build["spec"]["variables"] == {"service_name": "clock"}


async def test_build_template_given_in_the_build_wins_over_the_project_template(
    client: httpx.AsyncClient,
):
    pname = name()
    r = await client.post(
        "/project/create-and-build",
        json=body(pname, template="static-site", build={"template": "blank"}),
    )

    assert r.status_code == 201, r.text
    build = (await client.get(f"/builds/{r.json()['task_id']}")).json()
    assert build["template"]["name"] == "blank"
    assert build["rendered_prompt"] == "make it better"


@pytest.mark.parametrize(
    ("project", "field", "words"),
    [
        ({"build": {"agent": "no-such-agent"}}, "build.agent", "unknown agent"),
        ({"build": {"variables": {"colour": "red"}}}, "build.variables.colour", "unknown"),
        (
            {"template": "python-service", "variables": {"port": "80"}},
            "project.variables.port",
            "must be of type integer",
        ),
        ({"template": "no-such-template"}, "project.template", "not found"),
        (
            {"build": {"callback_url": "http://169.254.169.254/latest"}},
            "build.callback_url",
            "",
        ),
        ({"build": {"template": "nope"}}, "build.template", "not found"),
        ({"owner": "acme"}, "project.owner", "Gitea option"),
        ({"default_branch": "-x"}, "project.default_branch", "branch"),
    ],
)
async def test_create_and_build_whose_build_cannot_start_leaves_nothing_behind(
    client: httpx.AsyncClient,
    container: Container,
    project: dict[str, Any],
    field: str,
    words: str,
):
    pname = name()

    r = await client.post("/project/create-and-build", json=body(pname, **project))

    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"] == field
    assert problem["step"] == "validate"
    assert words in problem["detail"]
    assert problem["detail"].startswith("create-and-build failed at step 'validate'")
    await assert_nothing_left(client, container, pname)


async def test_a_bad_project_name_is_refused_before_anything_is_made(
    client: httpx.AsyncClient, container: Container
):
    r = await client.post("/project/create-and-build", json=body("../Evil"))

    assert r.status_code == 422
    assert r.json()["field"] == "project.name"
    assert not repos_dir(container).exists() or not any(repos_dir(container).iterdir())


def add_template(root: Path, tname: str, files: dict[str, str], links: dict[str, str]) -> None:
    folder = root / tname
    (folder / "scaffold").mkdir(parents=True)
    (folder / "template.toml").write_text(f'name = "{tname}"\nversion = "1"\n')
    for rel, text in files.items():
        (folder / "scaffold" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "scaffold" / rel).write_text(text)
    for rel, target in links.items():
        (folder / "scaffold" / rel).symlink_to(target)


@pytest.mark.parametrize(
    ("files", "links"),
    [
        ({"{{ '..' }}/escaped.txt": "x"}, {}),
        ({"{{ '/tmp/abs' }}.txt": "x"}, {}),
        ({"README.md": "ok"}, {"passwd": "/etc/passwd"}),
        ({"README.md": "ok"}, {"up": "/".join([".."] * 4 + ["outside"])}),
        ({"README.md.j2": "{{ ''.__class__.__mro__ }}"}, {}),
        ({"README.md.j2": "{{ self.__init__.__globals__ }}"}, {}),
    ],
)
async def test_scaffold_sandbox_escapes_are_422_and_nothing_is_made(
    client: httpx.AsyncClient,
    container: Container,
    templates_dir: Path,
    files: dict[str, str],
    links: dict[str, str],
):
    add_template(templates_dir, "evil", files, links)
    pname = name()

    r = await client.post("/project/create-and-build", json=body(pname, template="evil"))

    assert r.status_code == 422, r.text
    assert r.json().get("field") == "project.template", r.text
    assert r.json()["step"] == "validate"
    assert "root:" not in r.text
    await assert_nothing_left(client, container, pname)
    assert not (templates_dir.parent / "escaped.txt").exists()


class FailingSubmit:
    """The real BuildService, except that queueing the build fails (the step after the
    repository and the project were made): to prove the rollback."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.inner, attr)

    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise UpstreamFailed("the queue is down")


async def test_failure_after_repository_and_project_were_made_undoes_both(
    client: httpx.AsyncClient, container: Container
):
    container.create_and_build.builds = FailingSubmit(container.builds)
    pname = name()

    r = await client.post("/project/create-and-build", json=body(pname))

    assert r.status_code == 502, r.text
    problem = r.json()
    assert problem["step"] == "build"
    assert problem["undone"] == ["project removed", "repository deleted"]
    assert "left_behind" not in problem
    assert "failed at step 'build': the queue is down" in problem["detail"]
    await assert_nothing_left(client, container, pname)


async def test_taken_project_name_is_409_and_the_existing_repository_is_kept(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    assert (await client.post("/project/create-and-build", json=body(pname))).status_code == 201
    bare = repos_dir(container) / f"{pname}.git"

    again = await client.post("/project/create-and-build", json=body(pname))

    assert again.status_code == 409
    assert again.json()["field"] == "project.name"
    assert bare.is_dir() and git_log(bare) == [SCAFFOLD_MESSAGE]


async def test_kept_repository_of_a_deleted_project_blocks_the_name_and_is_not_deleted(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    first = await client.post("/project/create-and-build", json=body(pname))
    assert (await client.delete(f"/projects/{first.json()['project']['id']}")).status_code == 204
    bare = repos_dir(container) / f"{pname}.git"
    assert bare.is_dir()  # kept by default

    again = await client.post("/project/create-and-build", json=body(pname))

    assert again.status_code == 409, again.text
    assert again.json()["step"] == "repository"
    assert again.json()["undone"] == []
    assert bare.is_dir()
    assert (await client.get(f"/projects/{pname}")).status_code == 404


async def test_delete_with_delete_repository_removes_the_local_repository(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    r = await client.post("/project/create-and-build", json=body(pname))
    project_id = r.json()["project"]["id"]
    build = r.json()["task_id"]
    assert (await client.post(f"/builds/{build}/cancel")).status_code == 200

    d = await client.delete(f"/projects/{project_id}", params={"delete_repository": "true"})

    assert d.status_code == 204
    assert not (repos_dir(container) / f"{pname}.git").exists()


async def test_host_none_registers_an_existing_repository_without_making_one(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    r = await client.post(
        "/project/create-and-build",
        json=body(
            pname,
            host="none",
            repo_url="https://git.example.invalid/x.git",
            git_credential="s3cret",
        ),  # fmt: skip
    )

    assert r.status_code == 201, r.text
    assert r.json()["project"]["repo_url"] == "https://git.example.invalid/x.git"
    assert r.json()["project"]["has_git_credential"] is True
    assert "s3cret" not in r.text
    assert not (repos_dir(container) / f"{pname}.git").exists()


async def test_create_and_build_needs_projects_write_and_builds_write_and_the_project(
    client: httpx.AsyncClient, container: Container
):
    only_builds = await make_token(container, ["builds:write"])
    other_project = await make_token(container, ["projects:write", "builds:write"], ["other"])
    pname = name()

    r1 = await client.post("/project/create-and-build", json=body(pname), headers=only_builds)
    r2 = await client.post("/project/create-and-build", json=body(pname), headers=other_project)

    assert r1.status_code == 403 and r2.status_code == 403
    await assert_nothing_left(client, container, pname)


async def test_idempotency_key_replays_the_first_answer(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    headers = {"Idempotency-Key": "cab-" + pname}

    r1 = await client.post("/project/create-and-build", json=body(pname), headers=headers)
    r2 = await client.post("/project/create-and-build", json=body(pname), headers=headers)
    other = await client.post(
        "/project/create-and-build", json=body(pname, template="static-site"), headers=headers
    )

    assert r1.status_code == r2.status_code == 201, r2.text
    assert r2.json() == r1.json()
    assert r2.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    assert other.json()["field"] == "Idempotency-Key"
    builds = (await client.get(f"/projects/{pname}/builds")).json()["items"]
    assert len(builds) == 1


async def test_idempotency_key_of_a_failed_request_can_be_used_again(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    headers = {"Idempotency-Key": "retry-" + pname}

    bad = await client.post(
        "/project/create-and-build", json=body(pname, build={"agent": "x"}), headers=headers
    )
    good = await client.post("/project/create-and-build", json=body(pname), headers=headers)

    assert bad.status_code == 422
    assert good.status_code == 201, good.text


# -- git access and the task git credential ----------------------------------------------------


async def test_git_access_follows_token_scopes_and_project_lists(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    assert (await client.post("/project/create-and-build", json=body(pname))).status_code == 201
    authorize = container.git_http.authorize

    async def token(scopes: list[str], projects: list[str] | None = None) -> str:
        return (await make_token(container, scopes, projects))["Authorization"].split()[1]

    reader = await token(["builds:read"])
    worker = await token(["workers:run"])
    writer = await token(["projects:write"])
    mine = await token(["workers:run"], [pname])
    others = await token(["workers:run", "builds:read"], ["someone-else"])
    assert await authorize(reader, pname, False) is True
    assert await authorize(reader, pname, True) is False
    assert await authorize(worker, pname, True) is True
    assert await authorize(writer, pname, True) is True
    assert await authorize(mine, pname, True) is True
    assert await authorize(others, pname, False) is False
    assert await authorize("rdev_not_a_token", pname, False) is None
    assert await authorize(None, pname, False) is None


async def test_claim_of_a_local_project_carries_a_task_git_credential_for_that_project_only(
    client: httpx.AsyncClient, container: Container
):
    a, b = name(), name()
    for pname in (a, b):
        assert (await client.post("/project/create-and-build", json=body(pname))).status_code == 201
    external = await create_project(client)
    await client.post(f"/projects/{external['id']}/builds", json={"prompt": "x"})
    wid = await register_worker(client)
    r = await client.post(f"/workers/{wid}/claim", json={"max_tasks": 3, "wait_seconds": 2})
    tasks = {t["project"]["name"]: t for t in r.json()}
    authorize = container.git_http.authorize

    cred = tasks[a]["git_credential"]
    assert cred.startswith("rdevgit_") and tasks[a]["lease_token"] not in cred
    assert tasks[external["name"]]["git_credential"] is None
    assert await authorize(cred, a, True) is True
    assert await authorize(cred, b, False) is False
    assert await authorize(cred[:-2] + "xx", a, False) is None
    done = await client.post(
        f"/workers/{wid}/complete/{tasks[a]['task_id']}",
        json={"lease_token": tasks[a]["lease_token"], "result": {"success": True}},
    )
    assert done.status_code == 200
    assert await authorize(cred, a, False) is None  # dead with its lease


async def test_a_task_git_credential_outlives_its_lease_clock_until_the_reaper_takes_the_task(
    settings: Settings,
):
    """The credential follows the rule the heartbeat and the result follow: the task is
    leased under that token. A claim answer that reached a slow worker after the lease
    clock ran out must still clone; once reaped, the credential is dead. (The reaper is
    driven by hand here: its loop would race the expired clock.)"""
    container = build_container(settings)
    await container.start(background=False)
    pname = name()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(settings, container=container)),
            base_url="http://rdev.test",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        ) as client:
            created = await client.post("/project/create-and-build", json=body(pname))
            assert created.status_code == 201, created.text
            wid = await register_worker(client)
            claim = await client.post(f"/workers/{wid}/claim", json={"max_tasks": 1})
            [task] = claim.json()
            cred = task["git_credential"]

            await run_out_lease_clock(container, task["task_id"])
            past_the_clock = await container.git_http.authorize(cred, pname, True)
            heartbeat = await client.post(
                f"/workers/{wid}/heartbeat",
                json={"tasks": [{"task_id": task["task_id"], "lease_token": task["lease_token"]}]},
            )
            await run_out_lease_clock(container, task["task_id"])  # the heartbeat extended it
            reaped = await container.queue.reap_expired()
            after_reaping = await container.git_http.authorize(cred, pname, False)
    finally:
        await container.stop()

    assert past_the_clock is True
    assert heartbeat.status_code == 200, heartbeat.text
    assert reaped == 1
    assert after_reaping is None


async def test_git_over_http_through_the_api_app_requires_a_token(
    client: httpx.AsyncClient, container: Container
):
    pname = name()
    assert (await client.post("/project/create-and-build", json=body(pname))).status_code == 201
    path = f"/git/{pname}.git/info/refs?service=git-upload-pack"

    anonymous = await client.get(path, headers={"Authorization": ""})
    with_token = await client.get(path)

    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    assert with_token.status_code == 200
    assert b"refs/heads/main" in with_token.content


# -- Gitea host ---------------------------------------------------------------------------------


async def test_create_and_build_on_gitea_pushes_the_scaffold_and_keeps_the_credential(
    client: httpx.AsyncClient, fake_gitea: FakeGitea
):
    pname = name()
    r = await client.post(
        "/project/create-and-build",
        json=body(pname, host="gitea", owner="acme", private=True, template="static-site"),
    )

    assert r.status_code == 201, r.text
    project = r.json()["project"]
    assert project["repo_url"] == f"{fake_gitea.base_url}/acme/{pname}.git"
    assert project["has_git_credential"] is True
    assert fake_gitea.token not in r.text
    assert fake_gitea.log("acme", pname) == [SCAFFOLD_MESSAGE]
    assert "build.py" in (fake_gitea.read("acme", pname, "README.md") or "")
    assert fake_gitea.operations() == ["createOrgRepo"]
    assert fake_gitea.violations == []


async def test_gitea_name_taken_is_409_with_a_clear_error_and_nothing_left(
    client: httpx.AsyncClient, container: Container, fake_gitea: FakeGitea
):
    pname = name()
    fake_gitea.add_repo(fake_gitea.user, pname, {"README.md": "theirs\n"})

    r = await client.post("/project/create-and-build", json=body(pname, host="gitea"))

    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["step"] == "repository"
    assert problem["field"] == "project.name"
    assert "already taken on Gitea" in problem["detail"]
    assert problem["undone"] == []
    assert fake_gitea.token not in r.text
    await assert_nothing_left(client, container, pname)
    assert "deleteRepo" not in fake_gitea.operations()  # not ours: never deleted
    assert fake_gitea.read(fake_gitea.user, pname, "README.md") == "theirs\n"
    assert fake_gitea.violations == []


async def test_gitea_refused_name_is_422_and_nothing_left(
    client: httpx.AsyncClient, container: Container, fake_gitea: FakeGitea
):
    pname = name()
    fake_gitea.reject_names.add(pname)

    r = await client.post("/project/create-and-build", json=body(pname, host="gitea"))

    assert r.status_code == 422, r.text
    assert r.json()["step"] == "repository"
    assert "Gitea refused" in r.json()["detail"]
    await assert_nothing_left(client, container, pname)
    assert fake_gitea.repos == {}


async def test_gitea_repository_of_the_tokens_user_is_deleted_when_a_later_step_fails(
    client: httpx.AsyncClient, container: Container, fake_gitea: FakeGitea
):
    container.create_and_build.builds = FailingSubmit(container.builds)
    pname = name()

    r = await client.post("/project/create-and-build", json=body(pname, host="gitea"))

    assert r.status_code == 502, r.text
    assert r.json()["undone"] == ["project removed", "repository deleted"]
    assert fake_gitea.repos == {}
    assert fake_gitea.operations() == ["createCurrentUserRepo", "repoDelete"]
    assert fake_gitea.violations == []
    await assert_nothing_left(client, container, pname)
