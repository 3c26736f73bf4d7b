"""build_agents / offered: which agents a worker offers, and why not the others (the
options taken from Settings as bootstrap takes them)."""

from __future__ import annotations

from pathlib import Path

from rdev.adapters.agents.registry import build_agents, offered
from rdev.bootstrap import agent_options
from rdev.config import Settings


def _fake_binary(path: Path) -> str:
    path.write_text("#!/bin/sh\necho 0.0.0\n")
    path.chmod(0o755)
    return str(path)


def test_only_runnable_agents_are_offered_and_the_others_say_why(tmp_path: Path) -> None:
    settings = Settings(command_agent=None)
    agents = build_agents(agent_options(settings), {"PATH": str(tmp_path)})
    assert set(agents) == {"claude-code", "opencode"}
    names, notes = offered(agents)
    assert names == []
    assert notes["claude-code"] == "claude binary not found (set RDEV_CLAUDE_BIN)"
    assert notes["opencode"] == "opencode binary not found (set RDEV_OPENCODE_BIN)"


def test_configured_agents_are_offered(tmp_path: Path) -> None:
    settings = Settings(
        command_agent="echo hi",
        claude_bin=_fake_binary(tmp_path / "claude"),
        opencode_bin=_fake_binary(tmp_path / "opencode"),
        opencode_model="mock-model",
    )
    env = {"PATH": "/usr/bin:/bin", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    names, notes = offered(build_agents(agent_options(settings), env))
    assert names == ["claude-code", "command", "opencode"]
    assert notes == {}


def test_binaries_are_found_on_path(tmp_path: Path) -> None:
    _fake_binary(tmp_path / "claude")
    agents = build_agents(agent_options(Settings()), {"PATH": str(tmp_path)})
    assert agents["claude-code"].availability() is None
