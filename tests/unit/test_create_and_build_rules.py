"""Create-and-build's rules on in-memory fakes (no database, no git, no HTTP): milliseconds.

What is made is undone, in reverse order, when a later step fails, and the error says which
step failed and what was undone or left behind; an Idempotency-Key gives a retry the first
answer back, refuses the same key with another body, and lets a retry run again after a
failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from rdev.domain.auth import Principal
from rdev.domain.errors import (
    Conflict,
    DomainError,
    NotFound,
    UpstreamFailed,
    ValidationFailed,
)
from rdev.domain.events import ProjectDeleted
from rdev.domain.hostnames import AliasRecord
from rdev.domain.models import Build, BuildSpec, BuildStatus
from rdev.ports.projects import ProjectDefaults
from rdev.ports.repohost import CreatedRepo
from rdev.ports.templates import RenderedPrompt, Template
from rdev.services.create_and_build import (
    CreateAndBuildService,
    ProjectAndBuild,
    ProjectToCreate,
)
from rdev.services.events import EventBus
from rdev.services.projects import ProjectService
from tests.fakes.idempotency import FakeIdempotencyStore
from tests.fakes.projects import FakeProjectStore

ADMIN = Principal(token_id="tok-1", name="admin", scopes=frozenset({"admin"}), projects=None)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class Templates:
    """A TemplateProvider with one template, ``blank``; its scaffold is one README."""

    def list(self) -> list[Template]:
        return [self.get("blank")]

    def get(self, name: str) -> Template:
        if name != "blank":
            raise NotFound(f"template {name!r} not found", field="template")
        return Template(name="blank", description="", version="1")

    def render_prompt(
        self, name: str, prompt: str, variables: dict[str, Any], project: dict[str, Any]
    ) -> RenderedPrompt:
        return RenderedPrompt(prompt=prompt, template=name, version="1")

    def scaffold(
        self, name: str, dest: Path, variables: dict[str, Any], project: dict[str, Any]
    ) -> None:
        dest.mkdir(parents=True)
        (dest / "README.md").write_text(f"# {project['name']} at {project['repo_url']}\n")


class Host:
    """A RepoHost keeping repositories in a dict; ``fail_create``/``fail_delete`` break it."""

    name = "local"

    def __init__(self) -> None:
        self.repos: dict[str, str] = {}
        self.created: list[str] = []
        self.fail_create: Exception | None = None
        self.fail_delete: Exception | None = None

    def clone_url(self, name: str) -> str | None:
        return f"http://rdev.test/git/{name}.git"

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        if self.fail_create is not None:
            raise self.fail_create
        assert scaffold is not None
        self.repos[name] = (scaffold / "README.md").read_text()
        self.created.append(name)
        return CreatedRepo(clone_url=f"http://rdev.test/git/{name}.git")

    async def delete(self, name: str, options: dict[str, Any]) -> None:
        if self.fail_delete is not None:
            raise self.fail_delete
        self.repos.pop(name, None)


class Builds:
    """BuildSteps: prepares like a submit (known agents only) and queues in a list."""

    def __init__(self) -> None:
        self.submitted: list[tuple[str, BuildSpec]] = []
        self.fail_submit: Exception | None = None
        self.prepared_for: list[ProjectDefaults] = []

    async def prepare(
        self, project: ProjectDefaults, spec: BuildSpec
    ) -> tuple[BuildSpec, str, str, str | None, str | None]:
        self.prepared_for.append(project)
        agent = spec.agent or project.default_agent or "command"
        if agent not in ("command", "claude-code", "opencode"):
            raise ValidationFailed(f"unknown agent {agent!r}", field="agent")
        return spec, agent, spec.prompt, spec.template, "1"

    async def submit(
        self, principal: Principal, project_ref: str, spec: BuildSpec, idempotency_key: str | None
    ) -> tuple[Build, bool]:
        if self.fail_submit is not None:
            raise self.fail_submit
        self.submitted.append((project_ref, spec))
        build = Build(
            task_id=f"task-{len(self.submitted)}",
            project_id=project_ref,
            project_name="?",
            status=BuildStatus.PENDING,
            spec=spec,
            created_at=NOW,
        )
        return build, True


class Hostnames:
    """HostnameRules: ``taken`` names are refused; nobody has aliases."""

    def __init__(self, taken: Sequence[str] = ()) -> None:
        self.taken = set(taken)

    async def refuse_taken_hostname(self, project_name: str) -> None:
        if project_name in self.taken:
            raise Conflict(f"{project_name}.apps.test is an alias", field="name")

    async def aliases_of(self, project_id: str) -> tuple[AliasRecord, ...]:
        return ()


class World:
    def __init__(self, *, taken: Sequence[str] = ()) -> None:
        self.store = FakeProjectStore()
        self.events = EventBus()
        self.deleted: list[ProjectDeleted] = []
        self.events.subscribe(ProjectDeleted, self._on_deleted)
        self.projects = ProjectService(
            self.store,
            self.events,
            hostnames=Hostnames(taken),
            new_webhook_secret=lambda: "whsec_new",
        )
        self.host = Host()
        self.builds = Builds()
        self.keys = FakeIdempotencyStore()
        self.service = CreateAndBuildService(
            projects=self.projects,
            builds=self.builds,
            templates=Templates(),
            repo_hosts={"local": self.host},
            idempotency=self.keys,
        )

    async def _on_deleted(self, event: ProjectDeleted) -> None:
        self.deleted.append(event)


def request(name: str = "shop", *, prompt: str = "add a clock", **project: Any) -> ProjectAndBuild:
    """A request; its fingerprint is the body as text (the API hashes the JSON body)."""
    wanted = ProjectToCreate(name=name, **project)
    return ProjectAndBuild(
        project=wanted,
        build=BuildSpec(prompt=prompt, agent=project.get("default_agent")),
        fingerprint=repr((wanted, prompt)),
    )


async def test_a_request_makes_the_repository_registers_the_project_and_queues_the_build() -> None:
    w = World()
    outcome = await w.service.run(ADMIN, request(labels=("eu",)), None)
    record = await w.store.get("shop")
    assert outcome.project == record.as_project()
    assert outcome.task_id == "task-1" and outcome.status == BuildStatus.PENDING
    assert record.repo_url == "http://rdev.test/git/shop.git"
    assert record.repo_host == "local"
    assert record.labels == ("eu",)
    assert record.settings["repository"]["template"] == {"name": "blank", "version": "1"}
    assert record.webhook_secret == SecretStr("whsec_new")
    # The scaffold saw the repository's URL before the repository existed.
    assert w.host.repos["shop"] == "# shop at http://rdev.test/git/shop.git\n"
    (project_ref, spec) = w.builds.submitted[0]
    assert project_ref == record.id
    assert spec.template == "blank"  # the project's template, unless the build names one


async def test_a_failed_build_step_removes_the_project_then_deletes_the_repository() -> None:
    w = World()
    w.builds.fail_submit = Conflict("the queue is full")
    with pytest.raises(Conflict) as caught:
        await w.service.run(ADMIN, request(), None)
    error = caught.value
    assert error.extra["step"] == "build"
    assert error.extra["undone"] == ["project removed", "repository deleted"]
    assert "left_behind" not in error.extra
    assert "failed at step 'build'" in error.detail
    assert await w.store.list() == []
    assert w.host.repos == {}
    # The removal is a real project deletion: its followers hear of it (no repository kept
    # for them to delete: that is the repository step's own undo).
    assert [(e.project.name, e.delete_repository) for e in w.deleted] == [("shop", False)]


async def test_a_failed_project_step_deletes_the_repository_it_made() -> None:
    w = World(taken=["shop"])
    with pytest.raises(Conflict) as caught:
        await w.service.run(ADMIN, request(), None)
    assert caught.value.extra["step"] == "project"
    assert caught.value.extra["undone"] == ["repository deleted"]
    assert w.host.created == ["shop"] and w.host.repos == {}
    assert await w.store.list() == []


async def test_what_could_not_be_undone_is_reported_as_left_behind() -> None:
    w = World()
    w.builds.fail_submit = Conflict("the queue is full")
    w.host.fail_delete = OSError("disk gone")
    with capture_logs() as logs, pytest.raises(Conflict) as caught:
        await w.service.run(ADMIN, request(), None)
    assert [e["what"] for e in logs if e["event"] == "create-and-build rollback step failed"] == [
        "repository deleted"
    ]
    assert caught.value.extra["undone"] == ["project removed"]
    assert caught.value.extra["left_behind"] == ["repository"]
    assert "could NOT undo: repository" in caught.value.detail


async def test_an_unexpected_failure_is_an_upstream_error_that_hides_the_message() -> None:
    w = World()
    w.host.fail_create = RuntimeError("internal detail 7f3a")
    with capture_logs() as logs, pytest.raises(UpstreamFailed) as caught:
        await w.service.run(ADMIN, request(), None)
    assert [e["step"] for e in logs if e["event"] == "create-and-build failed unexpectedly"] == [
        "repository"
    ]
    assert caught.value.extra["step"] == "repository"
    assert "internal detail" not in caught.value.detail
    assert caught.value.extra["undone"] == []


async def test_a_bad_build_fails_validation_before_anything_is_made() -> None:
    w = World()
    with pytest.raises(ValidationFailed) as caught:
        await w.service.run(ADMIN, request(default_agent="nope"), None)
    assert caught.value.field == "build.agent"
    assert caught.value.extra["step"] == "validate"
    assert w.host.created == [] and await w.store.list() == []


async def test_a_taken_name_is_a_conflict_before_anything_is_made() -> None:
    w = World()
    await w.service.run(ADMIN, request(), None)
    with pytest.raises(Conflict) as caught:
        await w.service.run(ADMIN, request(prompt="again"), None)
    assert caught.value.field == "project.name"
    assert w.host.created == ["shop"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"host": "gitea", "gitea_options": {}}, "project.host"),  # not configured here
        ({"host": "ftp"}, "project.host"),
        ({"gitea_options": {"owner": "acme"}}, "project.owner"),
        ({"repo_url": "https://git.test/x.git"}, "project.repo_url"),
        ({"host": "none"}, "project.repo_url"),
        ({"default_branch": "a..b"}, "project.default_branch"),
        ({"template": "missing"}, "project.template"),
    ],
)
async def test_a_request_the_host_rules_refuse_names_the_field(
    fields: dict[str, Any], field: str
) -> None:
    w = World()
    with pytest.raises(DomainError) as caught:
        await w.service.run(ADMIN, request(**fields), None)
    assert caught.value.field == field
    assert w.host.created == []


async def test_host_none_registers_an_existing_repository_with_its_credential() -> None:
    w = World()
    req = request(
        host="none", repo_url="https://git.test/acme/shop.git", git_credential=SecretStr("pw")
    )
    await w.service.run(ADMIN, req, None)
    record = await w.store.get("shop")
    assert (record.repo_url, record.repo_host) == ("https://git.test/acme/shop.git", None)
    assert record.git_credential == SecretStr("pw")
    assert w.host.created == []


async def test_a_retry_with_the_same_key_gets_the_first_answer_back() -> None:
    w = World()
    first = await w.service.run(ADMIN, request(), "key-1")
    again = await w.service.run(ADMIN, request(), "key-1")
    assert again.replayed and not first.replayed
    assert (again.project, again.task_id, again.status, again.created_at) == (
        first.project,
        first.task_id,
        first.status,
        first.created_at,
    )
    assert w.host.created == ["shop"] and len(w.builds.submitted) == 1


async def test_the_same_key_with_another_body_is_refused() -> None:
    w = World()
    await w.service.run(ADMIN, request(), "key-1")
    with pytest.raises(ValidationFailed) as caught:
        await w.service.run(ADMIN, request(prompt="something else"), "key-1")
    assert caught.value.field == "Idempotency-Key"


async def test_a_key_whose_first_request_still_runs_is_a_conflict() -> None:
    w = World()
    req = request()
    await w.keys.reserve("key-1", f"create-and-build:{ADMIN.token_id}", req.fingerprint)
    with pytest.raises(Conflict) as caught:
        await w.service.run(ADMIN, req, "key-1")
    assert caught.value.field == "Idempotency-Key"
    assert w.host.created == []


async def test_a_failed_request_releases_its_key_so_a_retry_runs_again() -> None:
    w = World()
    w.builds.fail_submit = Conflict("the queue is full")
    with pytest.raises(Conflict):
        await w.service.run(ADMIN, request(), "key-1")
    w.builds.fail_submit = None
    outcome = await w.service.run(ADMIN, request(), "key-1")
    assert not outcome.replayed
    assert w.host.created == ["shop", "shop"]


async def test_keys_are_per_token() -> None:
    w = World()
    other = Principal(token_id="tok-2", name="other", scopes=frozenset({"admin"}), projects=None)
    await w.service.run(ADMIN, request(), "key-1")
    with pytest.raises(Conflict):  # the same key of another token is a new request
        await w.service.run(other, request(), "key-1")
