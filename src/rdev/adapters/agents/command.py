"""CommandAgent: runs the operator's own command line as the "agent".

The command is run with ``bash -c <command>`` (not shlex-split), so an operator can use
pipes, ``&&``, redirections and variables, exactly as typed in a shell. It runs in the
workdir, gets the prompt on stdin and in ``RDEV_PROMPT``, and each stdout line goes to the
build log. Success is exit code 0; the output is the last 64 KiB of stdout.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterable, Mapping

from rdev.adapters.agents.process import ProcessOutcome, agent_result, run_agent_process
from rdev.adapters.agents.run_environment import (
    allowlisted,
    minimal_env_for,
    run_dirs,
    scrubber_for,
)
from rdev.ports.agents import AgentRequest, AgentResult, LogSink

OUTPUT_CAP_BYTES = 64 * 1024


class CommandAgent:
    name = "command"

    def __init__(
        self,
        command: str | None,
        *,
        env_allowlist: Iterable[str] = (),
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.command = command
        self._provider_env = allowlisted(base_env or {}, env_allowlist)

    def availability(self) -> str | None:
        if not self.command or not self.command.strip():
            return "no command configured (set RDEV_COMMAND_AGENT)"
        return None

    async def run(self, request: AgentRequest, log: LogSink, cancel: asyncio.Event) -> AgentResult:
        reason = self.availability()
        if reason:
            return AgentResult(success=False, error=reason)
        scrub = scrubber_for(self._provider_env, request.env)
        shell = shutil.which("bash") or "/bin/sh"

        async def on_line(line: str) -> None:
            await log(scrub.scrub(line))

        with run_dirs(request) as dirs:
            env = minimal_env_for(
                dirs, {**self._provider_env, **request.env, "RDEV_PROMPT": request.prompt}
            )
            out = await run_agent_process(
                [shell, "-c", self.command or ""],
                cwd=request.workdir,
                env=env,
                timeout_seconds=request.timeout_seconds,
                cancel=cancel,
                on_line=on_line,
                stdin_data=request.prompt.encode(),
            )
        output = "\n".join(out.stdout_lines)
        capped = output.encode()[-OUTPUT_CAP_BYTES:].decode("utf-8", "replace")

        def exited(result: AgentResult, out: ProcessOutcome, stderr: str | None) -> None:
            if out.returncode == 0:
                result.success = True
                return
            result.error = f"command exited with code {out.returncode}"
            if stderr:
                result.error += f": {stderr}"

        return agent_result(
            out,
            AgentResult(success=False, output=capped, model=None),
            timeout_seconds=request.timeout_seconds,
            exited=exited,
            scrub=scrub.scrub,
        )
