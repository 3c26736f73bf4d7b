"""PATCH /projects/{id}: each field, write-only secrets, CI settings, webhook secret rotation."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rdev.adapters.db.tables import projects
from tests.conftest import make_token
from tests.factories import create_project

CI_TOKEN = "wp-patch-test-token-5f2a9c"
GIT_CREDENTIAL = "git-cred-7c1e44aa"


async def _row(container, project_id: str) -> dict:
    async with container.db.read() as conn:
        row = (await conn.execute(select(projects).where(projects.c.id == project_id))).mappings()
        return dict(row.one())


async def _patch(client, project: dict, body: dict, **kw):
    return await client.patch(f"/projects/{project['id']}", json=body, **kw)


async def test_patch_changes_only_the_fields_sent(client):
    p = await create_project(client, labels=["a"], default_branch="main")
    r = await _patch(client, p, {"default_branch": "develop"})
    assert r.status_code == 200, r.text
    assert r.json()["default_branch"] == "develop"
    assert r.json()["labels"] == ["a"]

    r = await _patch(client, p, {"labels": ["gpu", "big"], "default_agent": "command"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["gpu", "big"]
    assert body["default_agent"] == "command"
    assert body["default_branch"] == "develop"

    r = await _patch(client, p, {"default_agent": None})
    assert r.json()["default_agent"] is None

    got = (await client.get(f"/projects/{p['id']}")).json()
    assert (got["default_branch"], got["labels"], got["default_agent"]) == (
        "develop",
        ["gpu", "big"],
        None,
    )


async def test_patch_refuses_unknown_fields_null_branch_and_unknown_agent(client):
    p = await create_project(client)
    r = await _patch(client, p, {"repo_url": "https://elsewhere.invalid/x.git"})
    assert r.status_code == 422
    assert r.json()["field"] == "repo_url"
    r = await _patch(client, p, {"ci": {"provider": "woodpecker", "colour": "red"}})
    assert r.status_code == 422
    assert r.json()["field"] == "ci.colour"
    r = await _patch(client, p, {"default_branch": None})
    assert r.status_code == 422
    assert r.json()["field"] == "default_branch"
    r = await _patch(client, p, {"default_agent": "no-such-agent"})
    assert r.status_code == 422
    assert r.json()["field"] == "default_agent"


async def test_git_credential_is_write_only_and_null_clears_it(client, container):
    p = await create_project(client)
    r = await _patch(client, p, {"git_credential": GIT_CREDENTIAL})
    assert r.status_code == 200, r.text
    assert r.json()["has_git_credential"] is True
    assert GIT_CREDENTIAL not in r.text
    assert GIT_CREDENTIAL not in (await client.get(f"/projects/{p['id']}")).text
    assert GIT_CREDENTIAL not in (await client.get("/projects")).text
    assert (await _row(container, p["id"]))["git_credential"] == GIT_CREDENTIAL

    r = await _patch(client, p, {"git_credential": None})
    assert r.json()["has_git_credential"] is False
    assert (await _row(container, p["id"]))["git_credential"] is None


async def test_ci_settings_are_stored_apart_from_their_write_only_token(client, container):
    p = await create_project(client)
    assert p["ci"] == {"provider": "none", "server_url": None, "repo": None, "has_token": False}
    r = await _patch(
        client,
        p,
        {
            "ci": {
                "provider": "woodpecker",
                "server_url": "http://127.0.0.1:9/api/",
                "repo": "acme/shop",
                "token": CI_TOKEN,
            }
        },
    )
    assert r.status_code == 200, r.text
    assert CI_TOKEN not in r.text
    # The adapter's normalization is what is stored: no trailing '/api/'.
    assert r.json()["ci"] == {
        "provider": "woodpecker",
        "server_url": "http://127.0.0.1:9",
        "repo": "acme/shop",
        "has_token": True,
    }
    got = await client.get(f"/projects/{p['id']}")
    assert got.json()["ci"] == r.json()["ci"]
    assert CI_TOKEN not in got.text
    row = await _row(container, p["id"])
    assert row["ci_token"] == CI_TOKEN
    assert CI_TOKEN not in repr(row["settings"])

    # Changing the repo alone keeps the token (the client cannot read it back).
    r = await _patch(client, p, {"ci": {"provider": "woodpecker", "repo": "acme/shop2"}})
    assert r.status_code == 200, r.text
    assert r.json()["ci"]["repo"] == "acme/shop2"
    assert r.json()["ci"]["has_token"] is True
    assert (await _row(container, p["id"]))["ci_token"] == CI_TOKEN

    # provider none removes everything, token included.
    r = await _patch(client, p, {"ci": {"provider": "none"}})
    assert r.json()["ci"] == {
        "provider": "none",
        "server_url": None,
        "repo": None,
        "has_token": False,
    }
    row = await _row(container, p["id"])
    assert row["ci_token"] is None
    assert "ci" not in (row["settings"] or {})


@pytest.mark.parametrize(
    ("ci", "field"),
    [
        ({"server_url": "ftp://ci.invalid", "repo": "a/b", "token": CI_TOKEN}, "ci.server_url"),
        (
            {"server_url": f"https://u:{CI_TOKEN}@ci.invalid", "repo": "a/b", "token": CI_TOKEN},
            "ci.server_url",
        ),
        ({"server_url": "https://ci.invalid", "repo": "no-owner", "token": CI_TOKEN}, "ci.repo"),
        ({"server_url": "https://ci.invalid", "repo": "a/b"}, "ci.token"),
        ({"server_url": "https://ci.invalid", "repo": "a/b", "token": ""}, "ci.token"),
        ({"repo": "a/b", "token": CI_TOKEN}, "ci.server_url"),
    ],
)
async def test_bad_ci_settings_are_422_naming_the_field(client, container, ci, field):
    p = await create_project(client)
    r = await _patch(client, p, {"ci": {"provider": "woodpecker", **ci}})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == field
    assert CI_TOKEN not in r.text
    row = await _row(container, p["id"])
    assert row["ci_token"] is None
    assert "ci" not in (row["settings"] or {})


async def test_unknown_ci_provider_is_422(client):
    p = await create_project(client)
    r = await _patch(client, p, {"ci": {"provider": "jenkins", "token": CI_TOKEN}})
    assert r.status_code == 422
    assert r.json()["field"] == "ci.provider"
    assert CI_TOKEN not in r.text


async def test_rotating_the_webhook_secret_returns_the_new_one_once(client, container):
    p = await create_project(client)
    first = p.get("webhook_secret")
    r = await _patch(client, p, {"rotate_webhook_secret": True})
    assert r.status_code == 200, r.text
    secret = r.json()["webhook_secret"]
    assert secret.startswith("whsec_")
    assert secret != first
    assert (await _row(container, p["id"]))["webhook_secret"] == secret

    again = await _patch(client, p, {"labels": ["x"]})
    assert again.json()["webhook_secret"] is None
    assert secret not in again.text
    assert secret not in (await client.get(f"/projects/{p['id']}")).text
    assert secret not in (await client.get("/projects")).text
    assert (await _row(container, p["id"]))["webhook_secret"] == secret


async def test_patch_needs_projects_write_on_that_project(client, container):
    p = await create_project(client)
    other = await create_project(client)
    reader = await make_token(container, ["projects:read"])
    r = await _patch(client, p, {"labels": ["x"]}, headers=reader)
    assert r.status_code == 403
    scoped = await make_token(container, ["projects:write"], [other["name"]])
    r = await _patch(client, p, {"labels": ["x"]}, headers=scoped)
    assert r.status_code == 403
    r = await _patch(client, other, {"labels": ["x"]}, headers=scoped)
    assert r.status_code == 200, r.text
    r = await client.patch("/projects/no-such-project", json={"labels": []})
    assert r.status_code == 404
