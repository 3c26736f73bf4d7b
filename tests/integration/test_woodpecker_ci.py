"""WoodpeckerCI against a spec-checking fake Woodpecker: paging, filters, states, errors."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from rdev.adapters.ci import WoodpeckerCI, build_ci_provider
from rdev.domain.errors import (
    DomainError,
    NotFound,
    UpstreamFailed,
    UpstreamTimeout,
    ValidationFailed,
)
from rdev.ports.ci import CI_STATES, CISettings
from tests.fixtures.fake_woodpecker import SPEC_PATH, FakeWoodpecker, running_fake_woodpecker

REPO = "acme/app"
SHA = "0123456789abcdef0123456789abcdef01234567"
SPEC_STATUSES = json.loads(SPEC_PATH.read_text())["definitions"]["StatusValue"]["enum"]

EXPECTED_STATE = {
    "created": "pending",
    "pending": "pending",
    "running": "running",
    "success": "success",
    "failure": "failure",
    "killed": "cancelled",
    "canceled": "cancelled",
    "declined": "cancelled",
    "error": "error",
    "blocked": "blocked",
    "skipped": "skipped",
}


def sha(n: int) -> str:
    return hashlib.sha1(str(n).encode()).hexdigest()


@pytest.fixture
def fake() -> Iterator[FakeWoodpecker]:
    with running_fake_woodpecker() as f:
        f.add_repo(REPO)
        yield f


@pytest.fixture
def ci(fake: FakeWoodpecker) -> WoodpeckerCI:
    return WoodpeckerCI(fake.url, REPO, fake.token)


def list_params(fake: FakeWoodpecker) -> list[dict[str, str]]:
    return [dict(q) for m, p, q in fake.requests if p.endswith("/pipelines")]


async def test_list_is_newest_first_and_pages_follow_per_page(fake, ci):
    for n in range(1, 8):
        fake.add_pipeline(REPO, sha(n), "main", "success")
    assert [p.number for p in await ci.list_pipelines(page=1, per_page=3)] == [7, 6, 5]
    assert [p.number for p in await ci.list_pipelines(page=2, per_page=3)] == [4, 3, 2]
    assert [p.number for p in await ci.list_pipelines(page=3, per_page=3)] == [1]
    assert await ci.list_pipelines(page=4, per_page=3) == []
    assert {q["perPage"] for q in list_params(fake)} == {"3"}


async def test_per_page_above_50_is_filled_from_several_woodpecker_pages(fake, ci):
    for n in range(1, 121):
        fake.add_pipeline(REPO, sha(n), "main", "success")
    first = await ci.list_pipelines(page=1, per_page=80)
    second = await ci.list_pipelines(page=2, per_page=80)
    assert [p.number for p in first] == list(range(120, 40, -1))
    assert [p.number for p in second] == list(range(40, 0, -1))
    assert all(int(q["perPage"]) <= 50 for q in list_params(fake))


async def test_branch_event_and_status_filters_are_sent_to_the_server(fake, ci):
    fake.add_pipeline(REPO, sha(1), "main", "success")
    fake.add_pipeline(REPO, sha(2), "dev", "failure")
    fake.add_pipeline(REPO, sha(3), "dev", "success", event="manual")
    fake.add_pipeline(REPO, sha(4), "dev", "success")
    got = await ci.list_pipelines(branch="dev", event="push", status="success")
    assert [p.number for p in got] == [4]
    assert {"branch": "dev", "event": "push", "status": "success"}.items() <= list_params(fake)[
        -1
    ].items()
    both = await ci.list_pipelines(event="push,manual", branch="dev")
    assert [p.number for p in both] == [4, 3, 2]


async def test_status_standing_for_several_woodpecker_values_merges_them_in_order(fake, ci):
    raws = ["killed", "success", "canceled", "declined", "killed", "failure", "canceled"]
    for n, raw in enumerate(raws, start=1):
        fake.add_pipeline(REPO, sha(n), "main", raw)
    page1 = await ci.list_pipelines(status="cancelled", per_page=3)
    page2 = await ci.list_pipelines(status="cancelled", page=2, per_page=3)
    assert [p.number for p in page1] == [7, 5, 4]
    assert [p.number for p in page2] == [3, 1]
    assert [p.raw_status for p in page1 + page2] == [
        "canceled",
        "killed",
        "declined",
        "canceled",
        "killed",
    ]
    assert {q["status"] for q in list_params(fake)} == {"killed", "canceled", "declined"}


async def test_a_raw_woodpecker_status_is_accepted_as_filter(fake, ci):
    fake.add_pipeline(REPO, sha(1), "main", "killed")
    fake.add_pipeline(REPO, sha(2), "main", "canceled")
    assert [p.number for p in await ci.list_pipelines(status="killed")] == [1]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"status": "green"}, "status"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"page": 0}, "page"),
        ({"event": "push;drop"}, "event"),
        ({"status": "cancelled", "page": 6, "per_page": 100}, "page"),
    ],
)
async def test_invalid_list_arguments_are_refused_before_any_request(fake, ci, kwargs, field):
    with pytest.raises(ValidationFailed) as err:
        await ci.list_pipelines(**kwargs)
    assert err.value.field == field
    assert list_params(fake) == []


async def test_get_by_number_has_workflows_steps_and_web_url(fake, ci):
    p = fake.add_pipeline(
        REPO,
        SHA,
        "main",
        "running",
        steps=[("clone", "success"), ("test", "running"), ("deploy", "pending")],
    )
    repo_id = fake.add_repo(REPO).id
    got = await ci.get_pipeline(p.number)
    assert got.commit_sha == SHA and got.branch == "main" and got.event == "push"
    assert got.ref == "refs/heads/main" and got.author == "rdev-bot"
    assert got.url == f"{fake.url}/repos/{repo_id}/pipeline/{p.number}"
    [wf] = got.workflows
    assert (wf.name, wf.state) == ("ci", "running")
    assert [(s.name, s.state, s.raw_state) for s in wf.steps] == [
        ("clone", "success", "success"),
        ("test", "running", "running"),
        ("deploy", "pending", "pending"),
    ]
    assert wf.steps[0].started_at is not None and wf.steps[2].started_at is None
    assert (await ci.get_pipeline(str(p.number))).number == p.number
    listed = await ci.list_pipelines()
    assert listed[0].workflows == []  # Woodpecker lists carry no workflows


async def test_latest_is_newest_pipeline_on_the_default_branch(fake, ci):
    fake.add_pipeline(REPO, sha(1), "main", "success")
    fake.add_pipeline(REPO, sha(2), "main", "failure")
    fake.add_pipeline(REPO, sha(3), "feature", "running")
    latest = await ci.get_pipeline("latest")
    assert (latest.number, latest.status) == (2, "failure")


async def test_pipeline_states_follow_the_server_over_time(fake, ci):
    p = fake.add_pipeline(REPO, SHA, "main", "pending", steps=["clone", "test"])
    first = await ci.get_pipeline(p.number)
    assert first.status == "pending" and first.started_at is None
    fake.set_status(REPO, p.number, "running", steps={"clone": "success", "test": "running"})
    mid = await ci.get_pipeline(p.number)
    assert mid.status == "running" and mid.started_at and mid.finished_at is None
    fake.set_status(REPO, p.number, "failure", steps={"test": "failure"})
    done = await ci.get_pipeline(p.number)
    assert (done.status, done.raw_status) == ("failure", "failure")
    assert done.finished_at is not None
    assert [(s.state, s.exit_code) for s in done.workflows[0].steps] == [
        ("success", 0),
        ("failure", 1),
    ]


def test_every_spec_status_value_has_a_mapping():
    assert set(SPEC_STATUSES) == set(EXPECTED_STATE)


@pytest.mark.parametrize("raw", SPEC_STATUSES)
async def test_every_woodpecker_status_maps_to_a_normalized_state(fake, ci, raw):
    p = fake.add_pipeline(REPO, SHA, "main", raw, steps=[("s", raw)])
    got = await ci.get_pipeline(p.number)
    [listed] = await ci.list_pipelines()
    for status, kept in (
        (got.status, got.raw_status),
        (listed.status, listed.raw_status),
        (got.workflows[0].state, got.workflows[0].raw_state),
        (got.workflows[0].steps[0].state, got.workflows[0].steps[0].raw_state),
    ):
        assert status == EXPECTED_STATE[raw] and status in CI_STATES
        assert kept == raw


async def test_unix_timestamps_become_utc_iso_and_zero_becomes_none(fake, ci):
    p = fake.add_pipeline(REPO, SHA, "main", "pending", created=1_700_000_000)
    got = await ci.get_pipeline(p.number)
    assert got.created_at == "2023-11-14T22:13:20Z"
    assert got.started_at is None and got.finished_at is None


async def test_find_pipeline_for_commit_scans_past_the_first_page(fake, ci):
    for n in range(1, 61):
        fake.add_pipeline(REPO, sha(n), "main", "success")
    fake.set_status(REPO, 3, "failure", steps={"clone": "failure"})
    found = await ci.find_pipeline_for_commit(sha(3))
    assert found is not None and found.number == 3 and found.status == "failure"
    assert found.workflows and found.workflows[0].steps[0].state == "failure"
    assert (await ci.find_pipeline_for_commit(sha(3)[:10].upper())).number == 3
    assert await ci.find_pipeline_for_commit("f" * 40) is None
    with pytest.raises(ValidationFailed):
        await ci.find_pipeline_for_commit("abc12")
    assert await ci.find_pipeline_for_commit(sha(3), max_pipelines=50) is None


async def test_find_pipeline_for_commit_prefers_the_newest_run(fake, ci):
    fake.add_pipeline(REPO, SHA, "main", "failure")
    fake.add_pipeline(REPO, sha(9), "main", "success")
    fake.add_pipeline(REPO, SHA, "main", "running")  # a restart
    assert (await ci.find_pipeline_for_commit(SHA)).number == 3


async def test_repo_id_lookup_is_cached_per_server_and_repo(fake):
    fake.add_pipeline(REPO, SHA, "main", "success")
    one = WoodpeckerCI(fake.url, REPO, fake.token)
    two = WoodpeckerCI(fake.url + "/", REPO, fake.token)
    await one.list_pipelines()
    await one.get_pipeline(1)
    await two.get_pipeline("latest")
    assert fake.lookup_calls == 1
    fake.add_repo("acme/other")
    await WoodpeckerCI(fake.url, "acme/other", fake.token).list_pipelines()
    assert fake.lookup_calls == 2


async def test_wrong_token_is_reported_as_rejected_upstream(fake):
    ci = WoodpeckerCI(fake.url, REPO, "not-the-token-" + fake.token[-6:])
    with pytest.raises(UpstreamFailed) as err:
        await ci.list_pipelines()
    assert err.value.status == 502 and err.value.detail == "CI token rejected"


async def test_unknown_repo_and_unknown_pipeline_are_not_found(fake, ci):
    with pytest.raises(NotFound, match="acme/ghost"):
        await WoodpeckerCI(fake.url, "acme/ghost", fake.token).list_pipelines()
    fake.add_repo("acme/secret", readable=False)
    with pytest.raises(NotFound):
        await WoodpeckerCI(fake.url, "acme/secret", fake.token).get_pipeline(1)
    with pytest.raises(NotFound, match="42"):
        await ci.get_pipeline(42)
    with pytest.raises(NotFound, match="no pipeline"):
        await ci.get_pipeline("latest")


async def test_unknown_event_rejected_by_server_is_a_validation_error(fake, ci):
    with pytest.raises(ValidationFailed) as err:
        await ci.list_pipelines(event="nonsense")
    assert err.value.field == "event" and "push" in err.value.detail
    assert list_params(fake)[-1]["event"] == "nonsense"  # the server decided


@pytest.mark.parametrize("number", [0, -1, "abc", "1.5", True])
async def test_bad_pipeline_number_is_refused(ci, number):
    with pytest.raises(ValidationFailed):
        await ci.get_pipeline(number)


async def test_upstream_error_bodies_are_never_passed_through(fake, ci):
    fake.add_pipeline(REPO, SHA, "main", "success")
    await ci.list_pipelines()
    body = f"pq: relation broke near {fake.token} at /var/lib/woodpecker"
    for code, kind in ((400, UpstreamFailed), (500, UpstreamFailed), (503, UpstreamFailed)):
        fake.fail_next(code, body)
        with pytest.raises(kind) as err:
            await ci.get_pipeline(1)
        assert err.value.status == 502
        assert "relation" not in str(err.value) and fake.token not in str(err.value)


async def test_slow_server_times_out_as_upstream_timeout(fake):
    # The answer comes after 30 s, the timeout is 0.2 s: however slow this machine, only the
    # timeout can end the call first (the fake's shutdown cuts the waiting handler).
    fake.delay = 30.0
    ci = WoodpeckerCI(fake.url, REPO, fake.token, timeout=0.2)
    with pytest.raises(UpstreamTimeout) as err:
        await ci.list_pipelines()
    assert err.value.status == 504


async def test_unreachable_server_is_upstream_failed():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ci = WoodpeckerCI(f"http://127.0.0.1:{port}", REPO, "tok-unreachable-1234", timeout=2)
    with pytest.raises(UpstreamFailed) as err:
        await ci.list_pipelines()
    assert err.value.status == 502 and "unreachable" in err.value.detail


async def test_token_never_appears_in_any_raised_error(fake):
    token = fake.token
    errors: list[DomainError] = []
    with pytest.raises(ValidationFailed) as bad:
        WoodpeckerCI(f"http://user:{token}@127.0.0.1:9", REPO, token)
    errors.append(bad.value)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    cases = [WoodpeckerCI(dead, REPO, token, timeout=2).list_pipelines()]
    cases.append(WoodpeckerCI(fake.url, "acme/ghost", token).list_pipelines())
    cases.append(WoodpeckerCI(fake.url, REPO, token).get_pipeline(99))
    cases.append(WoodpeckerCI(fake.url, REPO, token).list_pipelines(event="bad"))
    cases.append(WoodpeckerCI(fake.url, REPO, token + "x").list_pipelines())
    for call in cases:
        with pytest.raises(DomainError) as err:
            await call
        errors.append(err.value)
    fake.delay = 30.0  # only the 0.1 s timeout can end the call first
    with pytest.raises(UpstreamTimeout) as err:
        await WoodpeckerCI(fake.url, REPO, token, timeout=0.1).list_pipelines()
    errors.append(err.value)
    assert len(errors) == 7
    for e in errors:
        assert token not in f"{e} {e.detail!r} {e.extra!r} {e!r} {e.__cause__!r}"


async def test_injected_client_and_api_suffix_in_server_url_work(fake):
    fake.add_pipeline(REPO, SHA, "main", "success")
    async with httpx.AsyncClient() as client:
        ci = build_ci_provider(
            CISettings("woodpecker", fake.url + "/api/", REPO, fake.token), client=client
        )
        assert [p.number for p in await ci.list_pipelines()] == [1]
        assert ci.server_url == fake.url


@pytest.mark.parametrize(
    ("server", "repo", "token", "field"),
    [
        ("ftp://ci", REPO, "t0ken", "server_url"),
        ("http://", REPO, "t0ken", "server_url"),
        ("http://ci", "app", "t0ken", "repo"),
        ("http://ci", REPO, "", "token"),
    ],
)
def test_bad_configuration_is_refused(server, repo, token, field):
    with pytest.raises(ValidationFailed) as err:
        WoodpeckerCI(server, repo, token)
    assert err.value.field == field


def test_unknown_provider_is_refused():
    with pytest.raises(ValidationFailed) as err:
        build_ci_provider(CISettings("jenkins", "http://ci", REPO, "t0ken"))
    assert err.value.field == "provider"
