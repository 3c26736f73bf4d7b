"""Code agent adapters: Claude Code, OpenCode and an operator's command, behind the
CodeAgent port. ``build_agents(options)`` builds them; ``offered`` tells which can run.

``AGENT_PRIVATE_PATHS``: worktree paths the agent CLIs may write for themselves (settings,
project config). None was seen written with the environment these adapters set
(docs/agent-clis.md §1.8, §2.7), but the executor should leave them out of commits unless
they are already tracked, as a guard.
"""

from __future__ import annotations

AGENT_PRIVATE_PATHS: tuple[str, ...] = (".claude/", ".opencode/")

__all__ = ["AGENT_PRIVATE_PATHS"]
