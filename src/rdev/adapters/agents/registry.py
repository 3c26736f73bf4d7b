"""Builds the configured code agents from Settings, and says which of them can run here."""

from __future__ import annotations

import os
from collections.abc import Mapping

from rdev.adapters.agents.claude_code import ClaudeCodeAgent
from rdev.adapters.agents.command import CommandAgent
from rdev.adapters.agents.opencode import OpenCodeAgent
from rdev.config import Settings
from rdev.ports.agents import CodeAgent


def build_agents(
    settings: Settings, base_env: Mapping[str, str] | None = None
) -> dict[str, CodeAgent]:
    """``command`` only if ``settings.command_agent`` is set; ``claude-code`` and ``opencode``
    always (their ``availability()`` says whether they can run). ``base_env`` is where the
    allowlisted provider variables and PATH come from (default: this process's env)."""
    env = dict(base_env if base_env is not None else os.environ)
    allow = settings.agent_env_allowlist
    agents: dict[str, CodeAgent] = {}
    if settings.command_agent:
        agents["command"] = CommandAgent(settings.command_agent, env_allowlist=allow, base_env=env)
    agents["claude-code"] = ClaudeCodeAgent(settings.claude_bin, allow, env)
    agents["opencode"] = OpenCodeAgent(
        settings.opencode_bin,
        allow,
        env,
        provider=settings.opencode_provider,
        model=settings.opencode_model,
        cost_per_mtok_input=settings.opencode_cost_per_mtok_input,
        cost_per_mtok_output=settings.opencode_cost_per_mtok_output,
    )
    return agents


def offered(agents: Mapping[str, CodeAgent]) -> tuple[list[str], dict[str, str]]:
    """(names of the agents that can run, sorted; {name: why not} for the others)."""
    names: list[str] = []
    notes: dict[str, str] = {}
    for name, agent in sorted(agents.items()):
        reason = agent.availability()
        if reason is None:
            names.append(name)
        else:
            notes[name] = reason
    return names, notes
