"""ClaudeCodeAgent against the real Claude Code CLI and a scripted model API on 127.0.0.1."""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rdev.adapters.agents.claude_code import ClaudeCodeAgent
from rdev.config import Settings
from rdev.ports.agents import AgentRequest
from tests.fixtures.agent_clis import (  # noqa: F401
    CLAUDE_VERSION,
    GroupWatcher,
    LogCollector,
    claude_bin,
    git_repo,
    git_status,
    group_gone,
    process_marker,
    run_cancelled_while_tool_sleeps,
    scratch_dir,
    wait_for_marked_command,
    wait_no_marked_processes,
)
from tests.fixtures.model_server import (  # noqa: F401
    Fail,
    Hang,
    ScriptedModelServer,
    Text,
    ToolCall,
    closed_port_url,
    model_server,
)

ALLOWLIST = Settings().agent_env_allowlist
#: rdev runs Claude Code with CLAUDE_CODE_MAX_RETRIES=2: at most 3 calls of a failing model
#: API (its default is 10 retries, minutes of backoff). Counted, not timed.
MAX_CALLS_OF_A_FAILING_API = 3


def _agent(binary: Path, base_url: str) -> ClaudeCodeAgent:
    return ClaudeCodeAgent(
        str(binary),
        ALLOWLIST,
        {
            "PATH": os.environ["PATH"],
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_API_KEY": "sk-test-key-1234",
            "UNRELATED_SECRET": "nope",
        },
    )


def _request(repo: Path, scratch: Path, marker: str, **kw: object) -> AgentRequest:
    # Generous: only a run that fails to end waits this long on a loaded machine.
    params: dict = {"timeout_seconds": 120.0, **kw}
    return AgentRequest(
        workdir=repo,
        prompt="-Change the README",
        env={"RDEV_TEST_MARKER": marker},
        scratch_dir=scratch,
        **params,
    )


async def test_claude_edit_succeeds_and_reports_its_own_cost_tokens_and_turns(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    readme = str(git_repo / "README.md")
    model_server.script(
        ToolCall("Read", {"file_path": readme}),
        ToolCall("Edit", {"file_path": readme, "old_string": "hello", "new_string": "hello world"}),
        Text("README updated"),
    )
    log = LogCollector()
    result = await _agent(claude_bin, model_server.url).run(
        _request(git_repo, scratch_dir, process_marker), log, asyncio.Event()
    )
    assert result.success, result.error
    assert (git_repo / "README.md").read_text() == "hello world\n"
    assert git_status(git_repo).strip() == "M README.md"  # nothing else left in the repo
    assert result.output == "README updated"
    # Claude's own accounting: 3 calls x (100 in, 20 out) at its Opus prices.
    assert (result.input_tokens, result.output_tokens, result.turns) == (300, 60, 3)
    assert result.cost_usd == pytest.approx(0.003)
    assert result.session_id and result.model == "claude-opus-4-8"
    assert result.cli_version == CLAUDE_VERSION
    assert any(line.startswith("tool Edit: ") and readme in line for line in log.lines)
    assert "assistant: README updated" in log.lines
    calls = model_server.main_calls()
    assert len(calls) == 3
    assert calls[0].headers["x-api-key"] == "sk-test-key-1234"
    assert "UNRELATED_SECRET" not in str(calls[0].body)
    first_user_message = calls[0].body["messages"][0]["content"]
    assert first_user_message[-1]["text"] == "-Change the README"


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (401, "model API rejected the credentials (401)", False),
        (500, "model API server error (500)", False),
        (429, "model API rate limit (429)", True),
    ],
)
async def test_claude_model_api_errors_fail_fast_with_a_clear_reason(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
    status: int,
    expected: str,
    retryable: bool,
) -> None:
    model_server.script(Fail(status))
    result = await _agent(claude_bin, model_server.url).run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success
    assert result.error and result.error.startswith(expected), result.error
    # Fast: within the capped retry budget, not the CLI's default one.
    assert 1 <= len(model_server.main_calls()) <= MAX_CALLS_OF_A_FAILING_API
    assert result.retryable is retryable
    assert "sk-test-key-1234" not in result.error


async def test_claude_unreachable_model_api_fails_fast(
    claude_bin: Path, git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    result = await _agent(claude_bin, closed_port_url()).run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success and not result.retryable
    assert result.error and result.error.startswith("model API unreachable"), result.error


async def test_claude_timeout_stops_the_run_and_leaves_no_process(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(Hang())
    with GroupWatcher(process_marker) as watcher:
        result = await _agent(claude_bin, model_server.url).run(
            _request(git_repo, scratch_dir, process_marker, timeout_seconds=4),
            LogCollector(),
            asyncio.Event(),
        )
    assert result.timed_out and not result.success
    assert result.error == "timeout after 4s"
    assert watcher.groups
    assert all(group_gone(g) for g in watcher.groups)
    assert wait_no_marked_processes(process_marker) == []


async def test_claude_cancel_while_a_tool_runs_kills_everything_and_keeps_the_log(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(ToolCall("Bash", {"command": "sleep 300; echo never"}), Text("done"))
    result, log, groups = await run_cancelled_while_tool_sleeps(
        _agent(claude_bin, model_server.url),
        _request(git_repo, scratch_dir, process_marker, timeout_seconds=600),
        process_marker,
    )
    assert result.cancelled and not result.success
    assert "tool Bash: sleep 300; echo never" in log.lines
    assert len(groups) >= 2  # claude's group and the Bash tool's own group
    assert all(group_gone(g) for g in groups)
    assert wait_no_marked_processes(process_marker) == []


async def test_claude_max_turns_exceeded_fails_with_that_reason(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(
        ToolCall("Bash", {"command": "echo one"}),
        ToolCall("Bash", {"command": "echo two"}),
        Text("done"),
    )
    result = await _agent(claude_bin, model_server.url).run(
        _request(git_repo, scratch_dir, process_marker, max_turns=1),
        LogCollector(),
        asyncio.Event(),
    )
    assert not result.success
    assert result.error and result.error.startswith("max turns reached"), result.error


async def test_claude_budget_exceeded_stops_the_run(
    claude_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(
        ToolCall("Bash", {"command": "echo one > one.txt"}),
        ToolCall("Bash", {"command": "echo two > two.txt"}, delay=5.0),
        Text("done"),
    )
    result = await _agent(claude_bin, model_server.url).run(
        _request(git_repo, scratch_dir, process_marker, max_cost_usd=0.0005),
        LogCollector(),
        asyncio.Event(),
    )
    assert not result.success
    assert result.error and result.error.startswith("budget exceeded"), result.error
    assert len(model_server.main_calls()) == 1
    assert not (git_repo / "two.txt").exists()


def test_claude_unavailable_without_a_binary(tmp_path: Path) -> None:
    agent = ClaudeCodeAgent(None, ALLOWLIST, {"PATH": str(tmp_path)})
    assert agent.availability() == "claude binary not found (set RDEV_CLAUDE_BIN)"
