"""The fake Woodpecker holds requests and responses to Woodpecker's Swagger spec."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.fake_woodpecker import FakeWoodpecker, running_fake_woodpecker

REPO = "acme/app"


@pytest.fixture
def loose() -> Iterator[FakeWoodpecker]:
    """A fake whose violations the test inspects itself."""
    with running_fake_woodpecker(check_violations=False) as f:
        f.add_repo(REPO)
        yield f


def get(fake: FakeWoodpecker, path: str, token: str | None = None, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or fake.token}"}
    return httpx.get(fake.url + path, params=params, headers=headers)


def repo_id(fake: FakeWoodpecker) -> int:
    return fake.add_repo(REPO).id


def test_spec_valid_requests_leave_no_violations(loose):
    loose.add_pipeline(REPO, "a" * 40, "main", "success", steps=["clone", "test"])
    rid = repo_id(loose)
    assert get(loose, f"/api/repos/lookup/{REPO}").json()["id"] == rid
    assert get(loose, f"/api/repos/{rid}").status_code == 200
    assert (
        get(
            loose,
            f"/api/repos/{rid}/pipelines",
            page="1",
            perPage="5",
            branch="main",
            event="push",
            status="success",
            ref="main",
            after="2000-01-01T00:00:00Z",
        ).status_code
        == 200
    )
    assert get(loose, f"/api/repos/{rid}/pipelines/1").json()["workflows"][0]["children"]
    assert get(loose, f"/api/repos/{rid}/pipelines/latest").status_code == 200
    assert loose.violations == []


@pytest.mark.parametrize(
    ("path", "params", "expect"),
    [
        ("/api/repos/{rid}/pipelines", {"per_page": "5"}, "unknown query param 'per_page'"),
        ("/api/repos/{rid}/pipelines", {"page": "two"}, "'page'='two' is not an integer"),
        ("/api/repos/{rid}/pipeline", {}, "path not in spec"),
        ("/api/repos/abc/pipelines", {}, "'repo_id'='abc' is not an integer"),
        ("/api/repos/{rid}/pipelines/first", {}, "'pipeline_number'='first'"),
        ("/api/repos/{rid}/pipelines/1", {"branch": "main"}, "unknown query param 'branch'"),
        ("/repos/{rid}/pipelines", {}, "outside basePath"),
    ],
)
def test_requests_off_the_spec_are_recorded_as_violations(loose, path, params, expect):
    resp = get(loose, path.format(rid=repo_id(loose)), **params)
    assert resp.status_code == 400
    assert any(expect in v for v in loose.violations), loose.violations


def test_missing_authorization_header_is_a_violation(loose):
    httpx.get(f"{loose.url}/api/repos/lookup/{REPO}")
    assert any("missing required header 'Authorization'" in v for v in loose.violations)


def test_responses_off_the_spec_are_caught_before_sending(loose):
    loose.add_pipeline(REPO, "a" * 40, "main", "exploded")  # not a StatusValue
    resp = get(loose, f"/api/repos/{repo_id(loose)}/pipelines")
    assert resp.status_code == 500
    assert any("'exploded' is not one of" in v for v in loose.violations), loose.violations


def test_wrong_token_gets_plain_text_401(loose):
    resp = get(loose, f"/api/repos/lookup/{REPO}", token="nope")
    assert resp.status_code == 401 and resp.headers["content-type"].startswith("text/plain")


def test_list_caps_per_page_at_50_and_omits_workflows(loose):
    for n in range(60):
        loose.add_pipeline(REPO, f"{n:040x}", "main", "success")
    items = get(loose, f"/api/repos/{repo_id(loose)}/pipelines", perPage="500").json()
    assert len(items) == 50 and items[0]["number"] == 60
    assert all("workflows" not in i for i in items)


@pytest.mark.parametrize(
    "params", [{"event": "push,nope"}, {"status": "green"}, {"before": "yesterday"}]
)
def test_bad_filter_values_get_400_like_woodpecker(loose, params):
    resp = get(loose, f"/api/repos/{repo_id(loose)}/pipelines", **params)
    assert resp.status_code == 400 and loose.violations == []


def test_violations_fail_the_context_on_exit():
    with (
        pytest.raises(AssertionError, match="violating the Woodpecker spec"),
        running_fake_woodpecker() as fake,
    ):
        httpx.get(f"{fake.url}/api/nowhere", headers={"Authorization": "Bearer x"})
