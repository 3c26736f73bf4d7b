"""CommandAgent and the shared process runner, with real shell processes."""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rdev.adapters.agents.command import CommandAgent
from rdev.ports.agents import AgentRequest
from tests.fixtures.agent_clis import (  # noqa: F401
    LogCollector,
    git_repo,
    group_gone,
    marked_processes,
    process_marker,
    scratch_dir,
    wait_no_marked_processes,
)

#: Bounds a run only when it fails to end (its commands would run for 100 s or more).
ENDS_WITHIN = 60.0


def _request(repo: Path, scratch: Path, marker: str, timeout: float = 30.0) -> AgentRequest:
    return AgentRequest(
        workdir=repo,
        prompt="make it so\nplease",
        timeout_seconds=timeout,
        env={"RDEV_TEST_MARKER": marker},
        scratch_dir=scratch,
    )


async def test_command_gets_prompt_on_stdin_and_in_env_and_streams_lines(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent(
        'cat > from_stdin.txt; printf "%s" "$RDEV_PROMPT" > from_env.txt; '
        'echo "home=$HOME"; echo second'
    )
    log = LogCollector()
    result = await agent.run(_request(git_repo, scratch_dir, process_marker), log, asyncio.Event())
    assert result.success, result.error
    assert (git_repo / "from_stdin.txt").read_text() == "make it so\nplease"
    assert (git_repo / "from_env.txt").read_text() == "make it so\nplease"
    assert log.lines == [f"home={scratch_dir / 'home'}", "second"]
    assert result.output.endswith("second")


async def test_command_failure_reports_exit_code_and_stderr(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent("echo partial; echo 'it broke' >&2; exit 3")
    result = await agent.run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success
    assert result.error == "command exited with code 3: it broke"
    assert result.output == "partial"


async def test_command_env_is_minimal_and_secrets_are_scrubbed(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent(
        'echo "key=$ANTHROPIC_API_KEY other=${NOT_ALLOWED:-unset}"',
        env_allowlist=["ANTHROPIC_API_KEY"],
        base_env={"ANTHROPIC_API_KEY": "sk-very-secret-value", "NOT_ALLOWED": "leak"},
    )
    log = LogCollector()
    result = await agent.run(_request(git_repo, scratch_dir, process_marker), log, asyncio.Event())
    assert result.success
    assert log.lines == ["key=*** other=unset"]
    assert "sk-very-secret-value" not in result.output


async def test_command_timeout_kills_the_group_including_grandchildren(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    # The second background job escapes the group with setsid: only the runner's
    # descendant bookkeeping can find it.
    agent = CommandAgent("echo $$; sleep 100 & setsid sleep 101 & sleep 100")
    log = LogCollector()
    result = await asyncio.wait_for(
        agent.run(
            _request(git_repo, scratch_dir, process_marker, timeout=1.5), log, asyncio.Event()
        ),
        ENDS_WITHIN,
    )
    assert not result.success and result.timed_out
    assert result.error == "timeout after 1.5s"
    assert group_gone(int(log.lines[0]))
    assert wait_no_marked_processes(process_marker) == []


async def test_command_cancel_stops_a_command_ignoring_signals_and_keeps_partial_output(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent("echo $$; echo working; trap '' INT TERM; sleep 100 & sleep 100")
    cancel = asyncio.Event()
    log = LogCollector()

    async def sink(line: str) -> None:
        await log(line)
        if line == "working":
            cancel.set()

    # SIGINT and SIGTERM are ignored: only the SIGKILL step ends it, after both graces.
    result = await asyncio.wait_for(
        agent.run(_request(git_repo, scratch_dir, process_marker), sink, cancel), ENDS_WITHIN
    )
    assert result.cancelled and not result.success
    assert log.lines[1] == "working"
    assert "working" in result.output
    assert group_gone(int(log.lines[0]))
    assert wait_no_marked_processes(process_marker) == []


async def test_command_cancel_of_a_cooperative_command_is_quick(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent("echo started; sleep 100")
    cancel = asyncio.Event()

    async def sink(line: str) -> None:
        cancel.set()

    result = await asyncio.wait_for(
        agent.run(_request(git_repo, scratch_dir, process_marker), sink, cancel), ENDS_WITHIN
    )
    assert result.cancelled
    assert marked_processes(process_marker) == []


async def test_command_background_job_does_not_hold_the_run_open(
    git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    agent = CommandAgent("sleep 100 & echo done")
    result = await asyncio.wait_for(
        agent.run(_request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()),
        ENDS_WITHIN,
    )
    assert result.success
    assert wait_no_marked_processes(process_marker) == []


def test_command_agent_is_unavailable_without_a_command() -> None:
    assert CommandAgent(None).availability() is not None
    assert CommandAgent("true").availability() is None


@pytest.mark.parametrize(
    ("script", "timeout"),
    [
        pytest.param("echo done", 30.0, id="run-ends"),
        pytest.param("sleep 100", 2.5, id="run-times-out"),
    ],
)
async def test_a_daemon_that_left_the_process_tree_is_killed_when_the_run_ends(
    git_repo: Path, scratch_dir: Path, process_marker: str, script: str, timeout: float
) -> None:
    # The subshell starts a new session and exits at once, between two of the runner's
    # descendant scans: the sleep is re-parented to init, outside every recorded group.
    agent = CommandAgent(f"sleep 1.2; (setsid sleep 102 &); {script}")
    await agent.run(
        _request(git_repo, scratch_dir, process_marker, timeout=timeout),
        LogCollector(),
        asyncio.Event(),
    )
    assert wait_no_marked_processes(process_marker) == []
