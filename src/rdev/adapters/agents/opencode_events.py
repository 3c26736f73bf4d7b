"""OpenCode's ``run --format json`` events and ``--print-logs`` stderr, folded into a run's
outcome (docs/agent-clis.md §2.4, §2.5).

OpenCode has no final summary event: cost and tokens are summed over ``step_finish``
events, turns are counted from them, the answer is the last ``text``, and a clean end is a
last ``step_finish`` with reason ``stop``. Its retries of a failing model call are visible
only in its logs (``message="stream error" ... small=false``): the adapter counts them to
give up early, since OpenCode's own retry budget (5 retries, ~75–90 s) has no knob.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rdev.adapters.agents.api_errors import classify_api_failure
from rdev.adapters.agents.claude_events import short, tool_summary
from rdev.ports.agents import AgentResult

_LOGFMT = re.compile(r'([\w.]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line: str) -> dict[str, str]:
    out = {}
    for key, value in _LOGFMT.findall(line):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        out[key] = value
    return out


@dataclass
class OpenCodeStream:
    max_turns: int | None = None
    max_cost_usd: float | None = None
    session_id: str | None = None
    steps: int = 0
    cost: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    last_text: str = ""
    last_finish_reason: str | None = None
    #: A tool call that failed as the last thing that happened (e.g. auto-rejected).
    last_tool_error: str | None = None
    error: dict[str, Any] | None = None
    #: Why the adapter stopped the run itself (max turns, budget, API failing).
    stop_reason: str | None = None
    stop_retryable: bool = False
    api_failures: list[str] = field(default_factory=list)

    # --- stdout ------------------------------------------------------------------------

    def feed(self, line: str) -> str | None:
        """The log line for one stdout event; sets ``stop_reason`` when the run must end."""
        try:
            event = json.loads(line)
        except ValueError:
            return short(line, 500) if line.strip() else None
        if not isinstance(event, dict):
            return None
        self.session_id = event.get("sessionID") or self.session_id
        kind, part = event.get("type"), event.get("part") or {}
        if kind == "text":
            self.last_text = part.get("text") or self.last_text
            self.last_tool_error = None
            return f"assistant: {short(part.get('text', ''), 500)}"
        if kind == "reasoning":
            return f"thinking: {short(part.get('text', ''), 200)}"
        if kind == "tool_use":
            return self._tool(part)
        if kind == "step_finish":
            return self._step_finish(part)
        if kind == "error":
            self.error = event.get("error") or {}
            data = self.error.get("data") or {}
            return f"error: {short(data.get('message') or self.error.get('name') or 'error')}"
        return None

    def _tool(self, part: dict[str, Any]) -> str:
        name = part.get("tool", "?")
        state = part.get("state") or {}
        line = f"tool {name}: {tool_summary(name, state.get('input'))}"
        if state.get("status") == "error":
            self.last_tool_error = f"{name}: {short(state.get('error') or 'failed', 200)}"
            return f"{line}\ntool error: {short(state.get('error') or 'failed', 200)}"
        self.last_tool_error = None
        return line

    def _step_finish(self, part: dict[str, Any]) -> str | None:
        self.steps += 1
        self.last_finish_reason = part.get("reason")
        tokens = part.get("tokens") or {}
        cache = tokens.get("cache") or {}
        self.input_tokens += int(tokens.get("input") or 0) + int(cache.get("read") or 0)
        self.input_tokens += int(cache.get("write") or 0)
        self.output_tokens += int(tokens.get("output") or 0) + int(tokens.get("reasoning") or 0)
        self.cost += float(part.get("cost") or 0)
        if self.stop_reason is None and self.last_finish_reason != "stop":
            if self.max_cost_usd is not None and self.cost > self.max_cost_usd:
                self.stop_reason = (
                    f"budget exceeded: cost ${self.cost:.4f} > max ${self.max_cost_usd}"
                )
            elif self.max_turns is not None and self.steps >= self.max_turns:
                self.stop_reason = f"max turns reached: {self.max_turns}"
        return None

    # --- stderr (``--print-logs``) -------------------------------------------------------

    def feed_log(self, line: str, give_up_after: int) -> str | None:
        """A build-log line for a failed main model call; after ``give_up_after`` of them
        sets ``stop_reason``."""
        if 'message="stream error"' not in line:
            return None
        fields = parse_logfmt(line)
        if fields.get("small") == "true":  # the title generator: harmless
            return None
        message = re.sub(r"^AI_\w+: ", "", fields.get("error.error", "model call failed"))
        self.api_failures.append(message)
        if len(self.api_failures) >= give_up_after and self.stop_reason is None:
            failure = classify_api_failure(None, message)
            self.stop_reason = f"{failure.reason} (gave up after {give_up_after} attempts)"
            self.stop_retryable = failure.retryable
        return f"model API error (attempt {len(self.api_failures)}): {short(message)}"

    # --- the outcome ---------------------------------------------------------------------

    def apply_to(self, result: AgentResult, returncode: int | None, cost_known: bool) -> None:
        result.session_id = self.session_id
        result.turns = self.steps
        result.input_tokens = self.input_tokens
        result.output_tokens = self.output_tokens
        result.cost_usd = round(self.cost, 10) if cost_known else None
        result.output = self.last_text
        if self.stop_reason:
            result.error, result.retryable = self.stop_reason, self.stop_retryable
        elif self.error is not None:
            data = self.error.get("data") or {}
            failure = classify_api_failure(
                data.get("statusCode"), str(data.get("message") or self.error.get("name"))
            )
            result.error, result.retryable = failure.reason, failure.retryable
            result.retry_after_seconds = _retry_after(data.get("responseHeaders") or {})
        elif self.last_tool_error:
            result.error = f"opencode stopped after a failed tool call: {self.last_tool_error}"
        elif returncode != 0:
            result.error = f"opencode exited with code {returncode}"
        elif self.last_finish_reason != "stop":
            result.error = f"opencode ended without a final answer ({self.last_finish_reason})"
        result.success = result.error is None


def _retry_after(headers: dict[str, Any]) -> float | None:
    lowered = {str(k).lower(): v for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return float(lowered["retry-after-ms"]) / 1000
        if "retry-after" in lowered:
            return float(lowered["retry-after"])
    except (TypeError, ValueError):
        return None
    return None
