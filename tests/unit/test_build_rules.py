"""The build service's rules, on the in-memory stores: why a pending build waits, the
defaults and checks of a submit, idempotent replays, what a limited token may touch.

No database, no HTTP: the stores' clock is the test's, moved by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rdev.domain.auth import Principal
from rdev.domain.errors import Forbidden, NotFound, ValidationFailed
from rdev.domain.models import BuildSpec, BuildStatus
from rdev.ports.templates import RenderedPrompt, Template
from rdev.services.builds import BuildService
from tests.fakes.builds import BuildData, FakeBuildStore
from tests.fakes.projects import FakeProjectStore
from tests.fakes.workers import FakeWorkerStore

BOT = Principal("t-bot", "bot", frozenset({"builds:write", "builds:read"}))
OFFLINE_AFTER_SECONDS = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class OneTemplate:
    """A template provider knowing one template, ``fix``, whose prompt wraps the spec's."""

    def list(self) -> list[Template]:
        return [Template("fix", "Fix a bug", "1.2.0")]

    def get(self, name: str) -> Template:
        if name != "fix":
            raise NotFound(f"no template {name!r}")
        return self.list()[0]

    def render_prompt(
        self, name: str, prompt: str, variables: dict[str, Any], project: dict[str, Any]
    ) -> RenderedPrompt:
        return RenderedPrompt(f"In {project['name']}, fix: {prompt}", name, "1.2.0")

    def scaffold(
        self, name: str, dest: Path, variables: dict[str, Any], project: dict[str, Any]
    ) -> None:
        raise AssertionError("a submit never scaffolds")


@dataclass
class World:
    clock: Clock
    data: BuildData
    projects: FakeProjectStore
    workers: FakeWorkerStore
    service: BuildService
    checked_urls: list[str]

    async def project(self, name: str = "demo", **fields: Any) -> str:
        """A project in the project store and, as the SQL side's shared table, the builds'."""
        record = await self.projects.create(
            name=name, repo_url=f"file:///{name}", default_branch="trunk", git_credential=None
        )
        if fields:
            record = await self.projects.update(record.id, fields)  # type: ignore[arg-type]
        self.data.add_project(record.id, record.name)
        return record.id

    async def worker(
        self, name: str = "w1", agents: tuple[str, ...] = ("command",), labels: tuple[str, ...] = ()
    ) -> str:
        return await self.workers.register(
            name=name,
            hostname=None,
            labels=list(labels),
            agents=list(agents),
            agent_notes={},
            slots=1,
            version=None,
        )


def make_world(*, templates: OneTemplate | None = None, refuse_callbacks: bool = False) -> World:
    clock = Clock()
    data = BuildData(clock=clock)
    projects = FakeProjectStore(clock=clock)
    workers = FakeWorkerStore(clock=clock)
    checked: list[str] = []

    async def check_callback(url: str) -> None:
        checked.append(url)
        if refuse_callbacks:
            raise ValidationFailed(
                "callback_url resolves to a private address", field="callback_url"
            )

    service = BuildService(
        projects=projects,
        builds=FakeBuildStore(data),
        workers=workers,
        templates=templates,
        check_callback=check_callback,
        default_agent="claude-code",
        max_attempts=3,
        offline_after_seconds=OFFLINE_AFTER_SECONDS,
    )
    return World(clock, data, projects, workers, service, checked)


async def submit(w: World, project: str = "demo", **spec: Any) -> str:
    build, created = await w.service.submit(
        BOT, project, BuildSpec(prompt="make it so", **spec), None
    )
    assert created
    return build.task_id


async def reason(w: World, task_id: str) -> str | None:
    return (await w.service.get(BOT, task_id)).pending_reason


# -- why a build is pending ----------------------------------------------------------------


async def test_a_pending_build_with_no_worker_registered_says_no_worker_is_online() -> None:
    w = make_world()
    await w.project()
    task_id = await submit(w, agent="command")

    assert await reason(w, task_id) == "no worker is online"


async def test_a_worker_not_heard_from_or_stopped_is_not_online() -> None:
    w = make_world()
    await w.project()
    task_id = await submit(w, agent="command")
    quiet = await w.worker("quiet")
    w.clock.advance(OFFLINE_AFTER_SECONDS + 1)
    stopped = await w.worker("stopped")
    await w.workers.mark_stopped(stopped)

    assert await reason(w, task_id) == "no worker is online"
    await w.workers.touch(quiet, [])  # heard from again
    assert await reason(w, task_id) == "waiting for a free worker slot"


async def test_a_pending_build_names_its_agent_when_no_online_worker_offers_it() -> None:
    w = make_world()
    await w.project()
    await w.worker(agents=("command",))
    task_id = await submit(w)  # the server's default agent

    assert await reason(w, task_id) == "no online worker offers agent claude-code"


async def test_a_pending_build_names_the_labels_no_worker_offering_its_agent_has() -> None:
    w = make_world()
    await w.project()
    await w.worker("small", agents=("command",), labels=("linux",))
    await w.worker("gpu-box", agents=("opencode",), labels=("gpu", "linux"))
    task_id = await submit(w, agent="command", labels=["linux", "gpu"])

    assert (
        await reason(w, task_id) == "no online worker offering command has labels ['gpu', 'linux']"
    )


async def test_a_pending_build_some_worker_could_take_waits_for_a_free_slot() -> None:
    w = make_world()
    await w.project()
    await w.worker(agents=("command",), labels=("gpu", "linux"))
    task_id = await submit(w, agent="command", labels=["gpu"])

    assert await reason(w, task_id) == "waiting for a free worker slot"


async def test_a_build_that_is_not_pending_has_no_pending_reason() -> None:
    w = make_world()
    await w.project()
    task_id = await submit(w, agent="command")
    await w.service.cancel(BOT, task_id)

    build = await w.service.get(BOT, task_id)
    assert (build.status, build.pending_reason) == (BuildStatus.CANCELLED, None)


# -- a submit's defaults and checks ---------------------------------------------------------


async def test_agent_branch_and_labels_the_spec_leaves_out_come_from_the_project() -> None:
    w = make_world()
    await w.project("plain")
    await w.project("tuned", default_agent="opencode", labels=["gpu"])

    plain = await w.service.get(BOT, await submit(w, "plain"))
    tuned = await w.service.get(BOT, await submit(w, "tuned"))
    explicit = await w.service.get(
        BOT, await submit(w, "tuned", agent="command", branch="feature", labels=["arm"])
    )

    assert (plain.spec.agent, plain.spec.branch, plain.spec.labels) == ("claude-code", "trunk", [])
    assert (tuned.spec.agent, tuned.spec.branch, tuned.spec.labels) == (
        "opencode",
        "trunk",
        ["gpu"],
    )
    assert (explicit.spec.agent, explicit.spec.branch, explicit.spec.labels) == (
        "command",
        "feature",
        ["arm"],
    )


async def test_an_unknown_agent_is_refused_on_the_agent_field_and_nothing_is_stored() -> None:
    w = make_world()
    await w.project()

    with pytest.raises(ValidationFailed) as refused:
        await submit(w, agent="gpt-cli")

    assert refused.value.field == "agent"
    assert w.data.rows == {}


async def test_variables_without_a_template_are_refused() -> None:
    w = make_world(templates=OneTemplate())
    await w.project()

    with pytest.raises(ValidationFailed) as refused:
        await submit(w, variables={"issue": 7})

    assert refused.value.field == "variables"


async def test_a_template_is_refused_when_unknown_or_when_the_server_has_no_templates() -> None:
    for templates, message in ((OneTemplate(), "not found"), (None, "not available")):
        w = make_world(templates=templates)
        await w.project()

        with pytest.raises(ValidationFailed) as refused:
            await submit(w, template="refactor")

        assert refused.value.field == "template"
        assert message in str(refused.value.detail)
        assert w.data.rows == {}


async def test_a_template_build_stores_the_rendered_prompt_and_the_template_version() -> None:
    w = make_world(templates=OneTemplate())
    await w.project()

    build = await w.service.get(BOT, await submit(w, template="fix"))

    assert build.rendered_prompt == "In demo, fix: make it so"
    assert build.template_version == "1.2.0"


async def test_a_callback_url_is_checked_at_submit_and_a_refused_one_stores_nothing() -> None:
    w = make_world()
    await w.project()
    await submit(w)
    await submit(w, callback_url="https://bot.example/hook")
    assert w.checked_urls == ["https://bot.example/hook"]

    w = make_world(refuse_callbacks=True)
    await w.project()
    with pytest.raises(ValidationFailed) as refused:
        await submit(w, callback_url="http://10.0.0.1/hook")
    assert refused.value.field == "callback_url"
    assert w.data.rows == {}


async def test_a_retried_submit_with_the_same_key_returns_the_first_build() -> None:
    w = make_world()
    pid = await w.project()
    first, created = await w.service.submit(BOT, "demo", BuildSpec(prompt="one"), "key-1")
    await w.projects.update(pid, {"default_agent": "opencode"})  # defaults changed since

    again, replayed_created = await w.service.submit(BOT, "demo", BuildSpec(prompt="one"), "key-1")
    other, _ = await w.service.submit(BOT, "demo", BuildSpec(prompt="one"), "key-2")

    assert (created, replayed_created) == (True, False)
    assert again.task_id == first.task_id and again.spec.agent == "claude-code"
    assert other.task_id != first.task_id and other.spec.agent == "opencode"


# -- what a token may touch -----------------------------------------------------------------


async def test_a_token_limited_to_other_projects_can_neither_submit_nor_read_here() -> None:
    w = make_world()
    await w.project("demo")
    await w.project("mine")
    task_id = await submit(w, "demo")
    limited = Principal("t-lim", "limited", BOT.scopes, projects=frozenset({"mine"}))

    with pytest.raises(Forbidden):
        await w.service.submit(limited, "demo", BuildSpec(prompt="x"), None)
    with pytest.raises(Forbidden):
        await w.service.get(limited, task_id)
    with pytest.raises(Forbidden):
        await w.service.cancel(limited, task_id)


async def test_a_limited_token_lists_only_the_builds_of_its_projects() -> None:
    w = make_world()
    await w.project("demo")
    await w.project("mine")
    await submit(w, "demo")
    mine = await submit(w, "mine")
    limited = Principal("t-lim", "limited", BOT.scopes, projects=frozenset({"mine"}))

    page, cursor = await w.service.list(limited, None, None, limit=10, cursor=None)

    assert [b.task_id for b in page] == [mine] and cursor is None


async def test_a_read_only_token_cannot_submit_or_cancel() -> None:
    w = make_world()
    await w.project()
    task_id = await submit(w)
    reader = Principal("t-read", "reader", frozenset({"builds:read"}))

    with pytest.raises(Forbidden):
        await w.service.submit(reader, "demo", BuildSpec(prompt="x"), None)
    with pytest.raises(Forbidden):
        await w.service.cancel(reader, task_id)
    assert (await w.service.get(reader, task_id)).status == BuildStatus.PENDING
