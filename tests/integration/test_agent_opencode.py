"""OpenCodeAgent against the real OpenCode CLI and a scripted model API on 127.0.0.1."""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from rdev.adapters.agents.opencode import OpenCodeAgent
from rdev.config import Settings
from rdev.ports.agents import AgentRequest
from tests.fixtures.agent_clis import (  # noqa: F401
    OPENCODE_VERSION,
    GroupWatcher,
    LogCollector,
    git_repo,
    git_status,
    group_gone,
    opencode_bin,
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
#: OpenCode's own budget for a failing model call is 1 + 5 retries (~75-90 s, no knob);
#: the adapter gives up after 3 failed calls. Counted, not timed.
OPENCODE_OWN_BUDGET = 6


def _agent(binary: Path | None, base_url: str, **kw: object) -> OpenCodeAgent:
    params: dict = {
        "model": "mock-model",
        "cost_per_mtok_input": 3,
        "cost_per_mtok_output": 15,
        **kw,
    }
    return OpenCodeAgent(
        str(binary) if binary else None,
        ALLOWLIST,
        {
            "PATH": os.environ["PATH"],
            "OPENAI_BASE_URL": base_url,
            "OPENAI_API_KEY": "sk-test-key-5678",
            "UNRELATED_SECRET": "nope",
        },
        **params,
    )


def _request(repo: Path, scratch: Path, marker: str, **kw: object) -> AgentRequest:
    # Generous: only a run that fails to end waits this long on a loaded machine.
    params: dict = {"timeout_seconds": 180.0, **kw}
    return AgentRequest(
        workdir=repo,
        prompt="-Change the README",
        env={"RDEV_TEST_MARKER": marker},
        scratch_dir=scratch,
        **params,
    )


async def test_opencode_edit_succeeds_and_reports_cost_tokens_and_turns_from_its_events(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    readme = str(git_repo / "README.md")
    model_server.script(
        ToolCall("edit", {"filePath": readme, "oldString": "hello", "newString": "hello world"}),
        Text("README updated"),
    )
    log = LogCollector()
    result = await _agent(opencode_bin, model_server.openai_base_url).run(
        _request(git_repo, scratch_dir, process_marker), log, asyncio.Event()
    )
    assert result.success, result.error
    assert (git_repo / "README.md").read_text() == "hello world\n"
    assert git_status(git_repo).strip() == "M README.md"  # nothing else left in the repo
    assert result.output == "README updated"
    # Summed over its step_finish events: 2 steps x (100 in, 20 out) at $3/$15 per 1M.
    assert (result.input_tokens, result.output_tokens, result.turns) == (200, 40, 2)
    assert result.cost_usd == pytest.approx(0.0012)
    assert result.session_id and result.session_id.startswith("ses_")
    assert (result.model, result.cli_version) == ("mock-model", OPENCODE_VERSION)
    assert f"tool edit: {readme}" in log.lines
    assert "assistant: README updated" in log.lines
    calls = model_server.main_calls()
    assert len(calls) == 2
    assert calls[0].headers["authorization"] == "Bearer sk-test-key-5678"
    assert calls[0].body["messages"][1]["content"] == "-Change the README"
    assert "sk-test-key-5678" not in (scratch_dir / "opencode.json").read_text()


@pytest.mark.parametrize(
    ("status", "expected", "retryable"),
    [
        (401, "model API rejected the credentials (401)", False),
        (500, "model API error: The server had an error", False),
        (429, "model API rate limit (429)", True),
    ],
)
async def test_opencode_model_api_errors_fail_fast_with_a_clear_reason(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
    status: int,
    expected: str,
    retryable: bool,
) -> None:
    model_server.script(Fail(status))
    result = await _agent(opencode_bin, model_server.openai_base_url).run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success
    assert result.error and result.error.startswith(expected), result.error
    # Fast: the run ended before OpenCode spent its own retry budget.
    assert 1 <= len(model_server.main_calls()) < OPENCODE_OWN_BUDGET
    assert result.retryable is retryable
    assert wait_no_marked_processes(process_marker) == []


async def test_opencode_unreachable_model_api_fails_fast(
    opencode_bin: Path, git_repo: Path, scratch_dir: Path, process_marker: str
) -> None:
    result = await _agent(opencode_bin, closed_port_url() + "/v1").run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success and not result.retryable
    assert result.error and result.error.startswith("model API unreachable"), result.error


async def test_opencode_timeout_stops_the_run_and_leaves_no_process(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(Hang())
    with GroupWatcher(process_marker) as watcher:
        result = await _agent(opencode_bin, model_server.openai_base_url).run(
            _request(git_repo, scratch_dir, process_marker, timeout_seconds=12),
            LogCollector(),
            asyncio.Event(),
        )
    assert result.timed_out and not result.success
    assert result.error == "timeout after 12s"
    assert watcher.groups
    assert all(group_gone(g) for g in watcher.groups)
    assert wait_no_marked_processes(process_marker) == []


async def test_opencode_cancel_while_a_tool_runs_kills_the_tool_too_and_keeps_the_log(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    # OpenCode leaves its bash tool running on SIGINT/SIGTERM (own session): the adapter
    # must find and kill it.
    model_server.script(
        ToolCall("bash", {"command": "echo first", "description": "first"}),
        ToolCall("bash", {"command": "sleep 300; echo never", "description": "sleep"}),
        Text("done"),
    )
    result, log, groups = await run_cancelled_while_tool_sleeps(
        _agent(opencode_bin, model_server.openai_base_url),
        _request(git_repo, scratch_dir, process_marker, timeout_seconds=600),
        process_marker,
    )
    assert result.cancelled and not result.success
    assert "tool bash: echo first" in log.lines
    assert len(groups) >= 2  # opencode's group and the bash tool's own
    assert all(group_gone(g) for g in groups)
    assert wait_no_marked_processes(process_marker) == []


async def test_opencode_max_turns_is_enforced_by_counting_steps(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(
        ToolCall("bash", {"command": "echo one", "description": "one"}),
        ToolCall("bash", {"command": "echo two > two.txt", "description": "two"}, delay=60.0),
        Text("done"),
    )
    result = await _agent(opencode_bin, model_server.openai_base_url).run(
        _request(git_repo, scratch_dir, process_marker, max_turns=1),
        LogCollector(),
        asyncio.Event(),
    )
    assert not result.success
    assert result.error == "max turns reached: 1"
    assert result.turns == 1
    assert not (git_repo / "two.txt").exists()


async def test_opencode_budget_exceeded_stops_the_run(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
) -> None:
    model_server.script(
        ToolCall("bash", {"command": "echo one", "description": "one"}),
        # The next answer takes a minute, so the run is surely stopped (budget spent after
        # step 1) before a second tool could run, however loaded the machine is.
        ToolCall("bash", {"command": "echo two > two.txt", "description": "two"}, delay=60.0),
        Text("done"),
    )
    result = await _agent(opencode_bin, model_server.openai_base_url).run(
        _request(git_repo, scratch_dir, process_marker, max_cost_usd=0.0005),
        LogCollector(),
        asyncio.Event(),
    )
    assert not result.success
    assert result.error and result.error.startswith("budget exceeded"), result.error
    assert not (git_repo / "two.txt").exists()


async def test_opencode_auto_rejected_permission_is_a_failure(
    opencode_bin: Path,
    model_server: ScriptedModelServer,
    git_repo: Path,
    scratch_dir: Path,
    process_marker: str,
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside" / "x.txt"
    outside.parent.mkdir()
    model_server.script(ToolCall("write", {"filePath": str(outside), "content": "x"}), Text("done"))
    result = await _agent(opencode_bin, model_server.openai_base_url).run(
        _request(git_repo, scratch_dir, process_marker), LogCollector(), asyncio.Event()
    )
    assert not result.success
    assert result.error and result.error.startswith("opencode stopped after a failed tool call")
    assert not outside.exists()


def test_opencode_availability_names_what_is_missing(tmp_path: Path) -> None:
    missing = OpenCodeAgent(None, ALLOWLIST, {"PATH": str(tmp_path)}, model="m")
    assert missing.availability() == "opencode binary not found (set RDEV_OPENCODE_BIN)"
    fake = tmp_path / "opencode"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    no_url = OpenCodeAgent(str(fake), ALLOWLIST, {}, model="m")
    assert "OPENAI_BASE_URL" in (no_url.availability() or "")
    no_model = OpenCodeAgent(str(fake), ALLOWLIST, {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"})
    assert "RDEV_OPENCODE_MODEL" in (no_model.availability() or "")
    ok = OpenCodeAgent(
        str(fake), ALLOWLIST, {"OPENAI_BASE_URL": "http://127.0.0.1:1/v1"}, model="m"
    )
    assert ok.availability() is None
