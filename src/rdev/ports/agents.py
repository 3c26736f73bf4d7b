"""The CodeAgent port: run a coding agent CLI on a prompt in a workdir."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

#: Called with one readable line of agent progress; the worker streams it to the build log.
LogSink = Callable[[str], Awaitable[None]]


@dataclass
class AgentRequest:
    workdir: Path
    prompt: str
    timeout_seconds: float
    env: dict[str, str] = field(default_factory=dict)
    model: str | None = None
    max_turns: int | None = None
    max_cost_usd: float | None = None
    system_prompt: str | None = None
    #: Private scratch dir (HOME, config) for this run; outside the repository.
    scratch_dir: Path | None = None


@dataclass
class AgentResult:
    success: bool
    output: str = ""
    error: str | None = None
    cost_usd: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    turns: int | None = None
    session_id: str | None = None
    model: str | None = None
    cli_version: str | None = None
    #: The run stopped because ``cancel`` was set.
    cancelled: bool = False
    timed_out: bool = False
    #: Transient failure (e.g. the model API said 429): try the build again later.
    retryable: bool = False
    retry_after_seconds: float | None = None


class CodeAgent(Protocol):
    """One agent CLI. ``name`` is what BuildSpec.agent selects."""

    name: str

    def availability(self) -> str | None:
        """None when this agent can run here, else a one-line reason why not."""
        ...

    async def run(self, request: AgentRequest, log: LogSink, cancel: asyncio.Event) -> AgentResult:
        """Run to the end, a timeout or a cancel. Never raises for agent failures."""
        ...
