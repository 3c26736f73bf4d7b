"""Which code agents this worker has (temporary minimal version: command only)."""

from __future__ import annotations

import os

from rdev.adapters.agents.command import CommandAgent
from rdev.config import Settings
from rdev.ports.agents import CodeAgent


def build_agents(settings: Settings) -> dict[str, CodeAgent]:
    return {
        "command": CommandAgent(
            settings.command_agent, env_allowlist=settings.agent_env_allowlist,
            base_env=dict(os.environ),
        )
    }


def offered(agents: dict[str, CodeAgent]) -> tuple[list[str], dict[str, str]]:
    names, notes = [], {}
    for name, agent in agents.items():
        why = agent.availability()
        if why:
            notes[name] = why
        else:
            names.append(name)
    return names, notes
