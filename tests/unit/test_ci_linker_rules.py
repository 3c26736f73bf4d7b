"""The CI linker's rules on the in-memory link store, with a scripted CI and a hand-moved clock.

Which builds get linked, the backoff between checks (doubling, capped, reset by a change),
the deadline (a CI that keeps failing is retried until then, and giving up says why), the
end of a link with its one event, and the link state table. No database, no HTTP: each test
runs in milliseconds, and time only moves when a test moves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from rdev.domain.ci_links import (
    LINK_TRANSITIONS,
    CILinkState,
    CIProgress,
    check_link_transition,
    link_state,
)
from rdev.domain.errors import IllegalTransition, UpstreamFailed
from rdev.domain.events import BuildFinished
from rdev.domain.models import BuildResult, BuildStatus
from rdev.ports.ci import CIProvider, CISettings, CIStep, CIWorkflow, Pipeline, ProjectCI
from rdev.services.ci_linker import CILinker
from tests.fakes.ci_links import FakeCILinkStore

TOKEN = "wp-secret-token-424242"
CI = ProjectCI("woodpecker", "http://ci.test", "acme/shop", SecretStr(TOKEN))
SHA = "c0ffee" * 6 + "abcd"
CI_EVENTS = ("build.ci_passed", "build.ci_failed")
S = CILinkState


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


Answer = Pipeline | None | Exception


@dataclass
class ScriptedCI:
    """A CIProvider whose next answer a test sets: a pipeline, None (not found) or an error."""

    answer: Answer = None
    calls: list[str] = field(default_factory=list)
    server_url: str = "http://ci.test"
    repo_full_name: str = "acme/shop"

    def _next(self, call: str) -> Pipeline | None:
        self.calls.append(call)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer

    async def list_pipelines(self, *args: object, **kwargs: object) -> list[Pipeline]:
        raise AssertionError("the linker never lists")

    async def get_pipeline(self, number: int | str) -> Pipeline:
        got = self._next(f"get {number}")
        assert got is not None
        return got

    async def find_pipeline_for_commit(self, sha: str) -> Pipeline | None:
        return self._next(f"find {sha[:6]}")


def pipeline(status: str, number: int = 7, failed: tuple[str, ...] = ()) -> Pipeline:
    steps = [CIStep(name, "failure", "failure") for name in failed]
    return Pipeline(
        number=number,
        status=status,
        raw_status=status,
        event="push",
        branch="main",
        ref="refs/heads/main",
        commit_sha=SHA,
        message=None,
        author=None,
        created_at=None,
        started_at=None,
        finished_at=None,
        url=f"http://ci.test/repos/1/pipeline/{number}",
        workflows=[CIWorkflow("ci", status, status, steps)],
    )


@dataclass
class Rig:
    clock: Clock
    store: FakeCILinkStore
    ci: ScriptedCI
    linker: CILinker
    built: list[CISettings]

    async def finish(
        self,
        task_id: str = "t1",
        *,
        status: BuildStatus = BuildStatus.COMPLETED,
        commit: str | None = SHA,
    ) -> None:
        result = BuildResult(success=status == BuildStatus.COMPLETED, commit_sha=commit)
        await self.linker.on_build_complete(BuildFinished(task_id, status, result))

    def link(self, task_id: str = "t1") -> tuple[CILinkState, datetime, int]:
        link = self.store.links[self.store.build_of(task_id).build_id]
        return link.state, link.next_check_at, link.checks

    def ci_json(self, task_id: str = "t1") -> dict[str, object]:
        ci = self.store.build_of(task_id).ci
        assert ci is not None
        return ci.to_json()

    async def check_when_due(self) -> float:
        """Move the clock to the link's due time and run one pass; returns the wait."""
        _, due, _ = self.link()
        waited = (due - self.clock.now).total_seconds()
        self.clock.now = max(self.clock.now, due)
        assert await self.linker.check_due() == 1
        return waited


@pytest.fixture
def rig() -> Rig:
    clock = Clock()
    store = FakeCILinkStore(clock=clock)
    store.add_build("t1", project_ci=CI, wanted=CI_EVENTS)
    ci = ScriptedCI()
    built: list[CISettings] = []

    def factory(settings: CISettings, timeout: float) -> CIProvider:
        built.append(settings)
        return ci

    linker = CILinker(
        store,
        factory,
        poll_interval=5,
        max_poll_interval=30,
        link_timeout=600,
        clock=clock,
    )
    return Rig(clock, store, ci, linker, built)


def intervals(rig: Rig) -> Callable[[], float]:
    def wait() -> float:
        _, due, _ = rig.link()
        return (due - rig.clock.now).total_seconds()

    return wait


# -- which builds are linked -------------------------------------------------------------------


async def test_a_completed_pushed_build_of_a_project_with_ci_is_linked_once(rig: Rig) -> None:
    await rig.finish()
    await rig.finish()  # a repeated event changes nothing
    assert len(rig.store.links) == 1
    state, due, checks = rig.link()
    assert (state, due, checks) == (S.SEARCHING, rig.clock.now, 0)
    assert rig.ci_json()["status"] == "searching" and rig.ci_json()["provider"] == "woodpecker"
    assert rig.store.links[1].deadline_at == rig.clock.now + timedelta(seconds=600)


async def test_no_link_without_a_push_ci_a_commit_or_success(rig: Rig) -> None:
    rig.store.add_build("local", pushed=False, project_ci=CI)
    rig.store.add_build("no-ci", project_ci=None)
    await rig.finish("local")
    await rig.finish("no-ci")
    await rig.finish("t1", commit=None)
    await rig.finish("t1", status=BuildStatus.FAILED)
    await rig.finish("unknown-task")
    assert rig.store.links == {}


# -- backoff -------------------------------------------------------------------------------


async def test_checks_that_find_nothing_back_off_doubling_up_to_the_cap(rig: Rig) -> None:
    await rig.finish()
    waits = []
    for _ in range(5):
        waits.append(await rig.check_when_due())
    assert waits == [0, 10, 20, 30, 30]  # first check at once, then 2x, 4x, capped at 30 s
    state, _, checks = rig.link()
    assert state == S.SEARCHING and checks == 5
    assert rig.ci.calls == [f"find {SHA[:6]}"] * 5


async def test_any_change_of_the_pipeline_resets_the_backoff(rig: Rig) -> None:
    await rig.finish()
    wait = intervals(rig)
    await rig.check_when_due()  # nothing yet
    assert wait() == 10
    rig.ci.answer = pipeline("pending")
    await rig.check_when_due()  # found: a change
    assert rig.link()[0] == S.FOLLOWING and wait() == 5
    await rig.check_when_due()  # unchanged
    assert wait() == 10
    rig.ci.answer = pipeline("running")
    await rig.check_when_due()  # raw status changed
    assert wait() == 5
    assert rig.ci.calls[-2:] == ["get 7", "get 7"]  # followed by number once found


async def test_the_last_check_is_at_the_deadline_not_after_it(rig: Rig) -> None:
    await rig.finish()
    rig.clock.advance(595)
    assert await rig.linker.check_due() == 1
    _, due, _ = rig.link()
    assert due == rig.store.links[1].deadline_at  # min(now + 10 s, deadline)


# -- deadline -------------------------------------------------------------------------------


async def test_ci_errors_are_retried_until_the_deadline_then_given_up_as_unknown(rig: Rig) -> None:
    rig.ci.answer = UpstreamFailed(f"CI token rejected ({TOKEN})")
    await rig.finish()
    for _ in range(4):
        await rig.check_when_due()
        state, _, _ = rig.link()
        assert state == S.SEARCHING
        assert rig.ci_json()["error"] == "CI token rejected (***)"  # scrubbed
    rig.clock.now = rig.store.links[1].deadline_at
    assert await rig.linker.check_due() == 1
    ci = rig.ci_json()
    assert rig.link()[0] == S.GAVE_UP
    assert ci["status"] == "unknown" and "deadline" in str(ci["reason"])
    assert TOKEN not in str(ci)
    assert rig.store.events == []  # giving up queues nothing
    rig.clock.advance(3600)
    assert await rig.linker.check_due() == 0  # never checked again
    assert len(rig.ci.calls) == 5


async def test_a_pipeline_that_does_not_finish_by_the_deadline_times_out(rig: Rig) -> None:
    rig.ci.answer = pipeline("running")
    await rig.finish()
    await rig.check_when_due()
    assert rig.link()[0] == S.FOLLOWING
    rig.clock.now = rig.store.links[1].deadline_at + timedelta(seconds=1)
    await rig.linker.check_due()
    ci = rig.ci_json()
    assert rig.link()[0] == S.GAVE_UP
    assert (ci["status"], ci["raw_status"], ci["pipeline_number"]) == ("timeout", "running", 7)
    assert "did not finish" in str(ci["reason"])
    assert rig.store.events == []


async def test_ci_removed_from_the_project_gives_up_without_asking_ci(rig: Rig) -> None:
    await rig.finish()
    rig.store.build_of("t1").project_ci = None
    await rig.check_when_due()
    assert rig.link()[0] == S.GAVE_UP
    assert rig.ci_json()["status"] == "unknown"
    assert rig.ci.calls == [] and rig.built == []


# -- the end of a link ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event"),
    [
        ("failure", "build.ci_failed"),
        ("error", "build.ci_failed"),
        ("cancelled", "build.ci_failed"),
        ("success", "build.ci_passed"),
        ("skipped", "build.ci_passed"),
    ],
)
async def test_a_terminal_pipeline_ends_the_link_with_its_one_event(
    rig: Rig, status: str, event: str
) -> None:
    rig.ci.answer = pipeline(status, failed=("test",) if event == "build.ci_failed" else ())
    await rig.finish()
    await rig.check_when_due()
    ci = rig.ci_json()
    assert rig.link()[0] == S.DONE
    assert ci["status"] == status and ci["pipeline_number"] == 7
    assert ci["failed_steps"] == (["test"] if event == "build.ci_failed" else [])
    assert "error" not in ci and "reason" not in ci
    assert rig.store.events == [(1, event)]
    rig.clock.advance(3600)
    assert await rig.linker.check_due() == 0


async def test_the_provider_is_built_from_the_projects_ci_with_its_token(rig: Rig) -> None:
    await rig.finish()
    await rig.check_when_due()
    assert rig.built == [CISettings("woodpecker", "http://ci.test", "acme/shop", TOKEN)]


# -- the state table ------------------------------------------------------------------------


def test_links_only_move_forward_and_finished_links_never_change() -> None:
    assert check_link_transition("searching", "following") == S.FOLLOWING
    assert check_link_transition(S.FOLLOWING, S.FOLLOWING) == S.FOLLOWING
    for src, dst in [
        (S.FOLLOWING, S.SEARCHING),
        (S.DONE, S.SEARCHING),
        (S.DONE, S.GAVE_UP),
        (S.GAVE_UP, S.FOLLOWING),
    ]:
        with pytest.raises(IllegalTransition):
            check_link_transition(src, dst)
    assert all(not LINK_TRANSITIONS[s] for s in S if not s.is_open)


def test_an_unknown_link_state_is_a_domain_error_not_a_guess() -> None:
    with pytest.raises(IllegalTransition):
        link_state("paused")
    with pytest.raises(IllegalTransition):
        check_link_transition("searching", "paused")


def test_the_builds_ci_json_keeps_its_shape_and_reads_back_the_same() -> None:
    searching = CIProgress.searching("woodpecker", SHA)
    assert searching.to_json() == {
        "provider": "woodpecker",
        "commit_sha": SHA,
        "pipeline_number": None,
        "status": "searching",
        "raw_status": None,
        "url": None,
        "failed_steps": [],
    }
    ended = searching.with_error("CI unreachable").given_up("unknown", "no pipeline")
    assert ended.to_json() == {
        **searching.to_json(),
        "status": "unknown",
        "reason": "no pipeline",
        "error": "CI unreachable",
    }
    assert CIProgress.from_json(ended.to_json(), commit_sha=SHA) == ended
    assert CIProgress.from_json(None, commit_sha=SHA) == CIProgress.searching("", SHA)
