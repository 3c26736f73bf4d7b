"""Builds the configured code agents, and says which of them can run here.

The options are plain values (``bootstrap.agent_options`` takes them from the settings), so
this adapter does not know where configuration comes from.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rdev.adapters.agents.claude_code import ClaudeCodeAgent
from rdev.adapters.agents.command import CommandAgent
from rdev.adapters.agents.opencode import OpenCodeAgent
from rdev.ports.agents import CodeAgent


@dataclass(frozen=True)
class AgentOptions:
    """How to build each agent: ``command`` is the operator's shell line (no command agent
    without one); the binaries default to ``$RDEV_*_BIN`` or PATH; ``env_allowlist`` names the
    provider variables an agent may see; the ``opencode_*`` values are the OpenCode
    provider, model and prices (USD per 1M tokens)."""

    command: str | None = None
    claude_bin: str | None = None
    opencode_bin: str | None = None
    env_allowlist: Sequence[str] = ()
    opencode_provider: str = "openai"
    opencode_model: str | None = None
    opencode_cost_per_mtok_input: float | None = None
    opencode_cost_per_mtok_output: float | None = None


def build_agents(
    options: AgentOptions, base_env: Mapping[str, str] | None = None
) -> dict[str, CodeAgent]:
    """``command`` only if ``options.command`` is set; ``claude-code`` and ``opencode``
    always (their ``availability()`` says whether they can run). ``base_env`` is where the
    allowlisted provider variables and PATH come from (default: this process's env)."""
    env = dict(base_env if base_env is not None else os.environ)
    allow = list(options.env_allowlist)
    agents: dict[str, CodeAgent] = {}
    if options.command:
        agents["command"] = CommandAgent(options.command, env_allowlist=allow, base_env=env)
    agents["claude-code"] = ClaudeCodeAgent(options.claude_bin, allow, env)
    agents["opencode"] = OpenCodeAgent(
        options.opencode_bin,
        allow,
        env,
        provider=options.opencode_provider,
        model=options.opencode_model,
        cost_per_mtok_input=options.opencode_cost_per_mtok_input,
        cost_per_mtok_output=options.opencode_cost_per_mtok_output,
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
