"""Claude Code's ``--output-format stream-json`` events: one readable log line per event,
and the run's outcome from the final ``result`` event (docs/agent-clis.md §1.4–§1.6)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from rdev.adapters.agents.api_errors import classify_api_failure
from rdev.ports.agents import AgentResult

_MODEL_SUFFIX = re.compile(r"\[[^\]]*\]$")


def short(text: Any, limit: int = 200) -> str:
    """One line, at most ``limit`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def tool_summary(name: str, data: Any) -> str:
    """A short description of a tool call's input: its path, command or pattern."""
    if not isinstance(data, dict):
        return short(data, 120)
    for key in ("command", "file_path", "filePath", "path", "pattern", "url", "description"):
        if data.get(key):
            return short(data[key], 160)
    return short(json.dumps(data, ensure_ascii=False), 120)


@dataclass
class ClaudeStream:
    """Folds the event stream; ``feed`` returns the log line for an event (or None)."""

    session_id: str | None = None
    model: str | None = None
    cli_version: str | None = None
    result: dict[str, Any] | None = None
    last_text: str = ""
    api_errors: list[str] = field(default_factory=list)

    def feed(self, line: str) -> str | None:
        line = line.strip()
        if not line:
            return None
        try:
            event = json.loads(line)
        except ValueError:
            return short(line, 500)
        if not isinstance(event, dict):
            return short(line, 500)
        self.session_id = event.get("session_id") or self.session_id
        kind, subtype = event.get("type"), event.get("subtype")
        if kind == "system":
            return self._system(event, subtype)
        if kind == "assistant":
            return self._assistant(event)
        if kind == "user":
            return self._user(event)
        if kind == "result":
            self.result = event
            cost = event.get("total_cost_usd")
            cost_txt = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
            return f"result: {subtype}, {event.get('num_turns')} turns{cost_txt}"
        return None

    def _system(self, event: dict[str, Any], subtype: str | None) -> str | None:
        if subtype == "init":
            self.model = event.get("model") or self.model
            self.cli_version = event.get("claude_code_version") or self.cli_version
            return f"claude {self.cli_version or ''} started: model {self.model}".replace("  ", " ")
        if subtype == "api_retry":
            err = f"{event.get('error_status') or ''} {event.get('error') or ''}".strip()
            self.api_errors.append(err)
            delay = (event.get("retry_delay_ms") or 0) / 1000
            return (
                f"model API error {err}; retry {event.get('attempt')}/"
                f"{event.get('max_retries')} in {delay:.1f}s"
            )
        return None

    def _assistant(self, event: dict[str, Any]) -> str | None:
        message = event.get("message") or {}
        lines = []
        for block in message.get("content") or []:
            if block.get("type") == "text" and block.get("text"):
                self.last_text = block["text"]
                lines.append(f"assistant: {short(block['text'], 500)}")
            elif block.get("type") == "tool_use":
                name = block.get("name", "?")
                lines.append(f"tool {name}: {tool_summary(name, block.get('input'))}")
            elif block.get("type") == "thinking" and block.get("thinking"):
                lines.append(f"thinking: {short(block['thinking'], 200)}")
        return "\n".join(lines) or None

    def _user(self, event: dict[str, Any]) -> str | None:
        content = (event.get("message") or {}).get("content")
        if not isinstance(content, list):
            return None
        lines = []
        for block in content:
            if block.get("type") != "tool_result":
                continue
            body = block.get("content")
            if isinstance(body, list):
                body = " ".join(str(b.get("text", "")) for b in body if isinstance(b, dict))
            label = "tool error" if block.get("is_error") else "tool result"
            lines.append(f"{label}: {short(body or '', 160)}")
        return "\n".join(lines) or None

    # --- the outcome ---------------------------------------------------------------------

    def apply_to(self, result: AgentResult, max_cost_usd: float | None) -> None:
        """Fill ``result`` from the final event. Leaves success False without one."""
        result.session_id = self.session_id
        result.model = _MODEL_SUFFIX.sub("", self.model or "") or None
        ev = self.result
        if ev is None:
            result.output = self.last_text
            return
        usage = ev.get("usage") or {}
        result.cost_usd = ev.get("total_cost_usd")
        result.input_tokens = sum(
            int(usage.get(k) or 0)
            for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        result.output_tokens = int(usage.get("output_tokens") or 0)
        result.turns = ev.get("num_turns")
        model_usage = ev.get("modelUsage") or {}
        if model_usage:
            result.model = _MODEL_SUFFIX.sub("", next(iter(model_usage)))
        result.output = ev.get("result") or self.last_text or ""
        result.error = self._failure(ev, result, max_cost_usd)
        result.success = result.error is None

    def _failure(
        self, ev: dict[str, Any], result: AgentResult, max_cost_usd: float | None
    ) -> str | None:
        subtype = ev.get("subtype")
        errors = [str(e) for e in ev.get("errors") or []]
        if subtype == "error_max_turns":
            return f"max turns reached: {short(errors[0]) if errors else subtype}"
        if subtype == "error_max_budget_usd" or (
            max_cost_usd is not None and (result.cost_usd or 0) > max_cost_usd
        ):
            return f"budget exceeded: cost ${result.cost_usd or 0:.4f} > max ${max_cost_usd}"
        if subtype == "error_during_execution":
            return f"error during execution: {short(errors[0]) if errors else subtype}"
        if ev.get("is_error"):
            status = ev.get("api_error_status")
            text = str(ev.get("result") or "; ".join(errors) or subtype)
            if status is not None or "api error" in text.lower() or self.api_errors:
                failure = classify_api_failure(status, text)
                result.retryable = failure.retryable
                return failure.reason
            return f"claude failed: {short(text, 300)}"
        if subtype != "success":
            return f"claude failed: {subtype}: {short('; '.join(errors), 300)}"
        denials = ev.get("permission_denials") or []
        if denials:
            tools = sorted({str(d.get("tool_name")) for d in denials if isinstance(d, dict)})
            return f"permission denied for tools: {', '.join(tools)}"
        return None
