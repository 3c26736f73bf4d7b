"""ClaudeCodeAgent: runs Claude Code headless (``claude -p``), per docs/agent-clis.md §1.

Command line: ``claude -p --output-format stream-json --verbose
--dangerously-skip-permissions --no-session-persistence [--model M] [--max-turns N]
[--max-budget-usd X] [--append-system-prompt S] -- <prompt>`` with stdin /dev/null, a private
HOME and TMPDIR, ``IS_SANDBOX=1`` when root (else the bypass flag is refused), the
non-essential traffic switches, and ``CLAUDE_CODE_MAX_RETRIES`` so that a failing model API
ends the run in seconds rather than ~3 minutes. Only allowlisted provider variables
(``ANTHROPIC_API_KEY``, ``ANTHROPIC_BASE_URL``, ...) from the worker's environment reach it.
The budget is enforced by the CLI itself (``--max-budget-usd``) and checked again on its
final ``total_cost_usd``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping

from rdev.adapters.agents.claude_events import ClaudeStream, short
from rdev.adapters.agents.process import ProcessOutcome, agent_result, run_agent_process
from rdev.adapters.agents.run_environment import (
    allowlisted,
    find_binary,
    minimal_env_for,
    run_dirs,
    scrubber_for,
    version_of,
)
from rdev.ports.agents import AgentRequest, AgentResult, LogSink

#: Prompts longer than this go on stdin (which claude appends to the prompt): one argv
#: string may not exceed 128 KiB on Linux.
_ARGV_PROMPT_LIMIT = 100_000

CLAUDE_FIXED_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_BUG_COMMAND": "1",
}


class ClaudeCodeAgent:
    name = "claude-code"

    def __init__(
        self,
        binary: str | None = None,
        env_allowlist: Iterable[str] = (),
        base_env: Mapping[str, str] | None = None,
        *,
        max_api_retries: int = 2,
    ) -> None:
        source = base_env if base_env is not None else os.environ
        self.binary = find_binary(binary, "RDEV_CLAUDE_BIN", "claude", source)
        self._provider_env = allowlisted(source, env_allowlist)
        self.max_api_retries = max_api_retries
        self._version: str | None = None

    def availability(self) -> str | None:
        if not self.binary:
            return "claude binary not found (set RDEV_CLAUDE_BIN)"
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            return f"claude binary {self.binary} is not an executable file"
        return None

    async def cli_version(self) -> str | None:
        """``claude --version``, once per agent object (a concurrent first call may ask twice)."""
        if self._version is None and self.binary and self.availability() is None:
            self._version = await version_of(self.binary, {"DISABLE_AUTOUPDATER": "1"}, 30)
        return self._version

    def command_line(self, request: AgentRequest) -> tuple[list[str], bytes | None]:
        """argv and stdin data for a request."""
        argv = [
            str(self.binary), "-p",
            "--output-format", "stream-json", "--verbose",
            "--dangerously-skip-permissions", "--no-session-persistence",
        ]  # fmt: skip
        if request.model:
            argv += ["--model", request.model]
        if request.max_turns:
            argv += ["--max-turns", str(request.max_turns)]
        if request.max_cost_usd is not None:
            argv += ["--max-budget-usd", f"{request.max_cost_usd:f}"]
        if request.system_prompt:
            argv += ["--append-system-prompt", request.system_prompt]
        if len(request.prompt.encode()) > _ARGV_PROMPT_LIMIT:
            return argv, request.prompt.encode()
        return [*argv, "--", request.prompt], None

    async def run(self, request: AgentRequest, log: LogSink, cancel: asyncio.Event) -> AgentResult:
        reason = self.availability()
        if reason:
            return AgentResult(success=False, error=reason)
        version = await self.cli_version()
        scrub = scrubber_for(self._provider_env, request.env)
        stream = ClaudeStream()

        async def on_line(line: str) -> None:
            text = stream.feed(line)
            if text:
                for part in text.splitlines():
                    await log(scrub.scrub(part))

        argv, stdin_data = self.command_line(request)
        with run_dirs(request) as dirs:
            extra = {**self._provider_env, **request.env, **CLAUDE_FIXED_ENV}
            extra["CLAUDE_CODE_MAX_RETRIES"] = str(self.max_api_retries)
            if os.geteuid() == 0:
                extra["IS_SANDBOX"] = "1"
            out = await run_agent_process(
                argv,
                cwd=request.workdir,
                env=minimal_env_for(dirs, extra),
                timeout_seconds=request.timeout_seconds,
                cancel=cancel,
                on_line=on_line,
                stdin_data=stdin_data,
            )
        result = AgentResult(success=False, cli_version=stream.cli_version or version)
        stream.apply_to(result, request.max_cost_usd)

        def exited(result: AgentResult, out: ProcessOutcome, stderr: str | None) -> None:
            if stream.result is None:
                detail = f": {short(stderr, 300)}" if stderr else ""
                result.error = f"claude exited with code {out.returncode} without a result{detail}"
            elif result.success and out.returncode != 0:
                result.success = False
                result.error = f"claude exited with code {out.returncode}"

        return agent_result(
            out, result, timeout_seconds=request.timeout_seconds, exited=exited, scrub=scrub.scrub
        )
