"""OpenCodeAgent: runs ``opencode run --format json`` headless, per docs/agent-clis.md §2.

Each run gets a private HOME with XDG dirs, a fresh TMPDIR (deleted afterwards: OpenCode
leaves a 5.5 MB native module there per run) and its own config file, outside the
repository, passed with ``OPENCODE_CONFIG``. Project config in the repo is ignored
(``OPENCODE_DISABLE_PROJECT_CONFIG=1``): a repository must not be able to point the agent
at another model endpoint. The config dir is pre-seeded so OpenCode does not npm-install
its plugin package, and the models catalogue, autoupdate, LSP downloads and sharing are
off, so the only traffic is to the model API.

Provider (``provider`` argument, ``RDEV_OPENCODE_PROVIDER``):

* ``openai`` (default): any OpenAI-compatible chat completions API. Base URL (including
  ``/v1``) from ``OPENCODE_PROVIDER_URL``, else ``OPENAI_BASE_URL``; key from
  ``OPENAI_API_KEY`` (optional).
* ``anthropic``: OpenCode's built-in Anthropic provider. Base URL from
  ``OPENCODE_PROVIDER_URL``, else ``ANTHROPIC_BASE_URL`` (``/v1`` is appended when missing,
  so Claude Code's convention works); key from ``ANTHROPIC_API_KEY``.

These variables must be in the env allowlist. The key is never written to the config
file: the config says ``{env:VAR}`` and OpenCode reads it from its environment.
The model is the request's, else ``model`` (``RDEV_OPENCODE_MODEL``). OpenCode reports cost
only if it knows prices: pass ``cost_per_mtok_input``/``_output`` (USD per 1M tokens);
otherwise ``cost_usd`` stays None. ``max_turns`` and ``max_cost_usd`` have no CLI flags:
the adapter counts ``step_finish`` events and stops the run itself.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from rdev.adapters.agents.claude_events import short
from rdev.adapters.agents.opencode_events import OpenCodeStream
from rdev.adapters.agents.process import STOP, ProcessOutcome, agent_result, run_agent_process
from rdev.adapters.agents.run_environment import (
    RunDirs,
    allowlisted,
    find_binary,
    minimal_env_for,
    run_dirs,
    scrubber_for,
    version_of,
)
from rdev.ports.agents import AgentRequest, AgentResult, LogSink

PROVIDER_ID = "rdev"

OPENCODE_FIXED_ENV = {
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "OPENCODE_DISABLE_SHARE": "1",
    "OPENCODE_DISABLE_PROJECT_CONFIG": "1",
}
_PLUGIN_PACKAGE = {"dependencies": {"@opencode-ai/plugin": "*"}}
_PLUGIN_LOCK = {"lockfileVersion": 3, "packages": {"": _PLUGIN_PACKAGE}}


class OpenCodeAgent:
    name = "opencode"

    def __init__(
        self,
        binary: str | None = None,
        env_allowlist: Iterable[str] = (),
        base_env: Mapping[str, str] | None = None,
        *,
        provider: str = "openai",
        model: str | None = None,
        cost_per_mtok_input: float | None = None,
        cost_per_mtok_output: float | None = None,
        context_limit: int = 200_000,
        output_limit: int = 8192,
        max_api_attempts: int = 3,
    ) -> None:
        source = base_env if base_env is not None else os.environ
        self.binary = find_binary(binary, "RDEV_OPENCODE_BIN", "opencode", source)
        self._provider_env = allowlisted(source, env_allowlist)
        self.provider = provider
        self.model = model
        self.cost = (cost_per_mtok_input, cost_per_mtok_output)
        self.limits = {"context": context_limit, "output": output_limit}
        self.max_api_attempts = max_api_attempts
        self._version: str | None = None

    # --- configuration -------------------------------------------------------------------

    def _base_url(self) -> str | None:
        env = self._provider_env
        if self.provider == "anthropic":
            url = env.get("OPENCODE_PROVIDER_URL") or env.get("ANTHROPIC_BASE_URL")
            if url and not url.rstrip("/").endswith("/v1"):
                url = url.rstrip("/") + "/v1"
            return url
        return env.get("OPENCODE_PROVIDER_URL") or env.get("OPENAI_BASE_URL")

    def _key_var(self) -> str:
        return "ANTHROPIC_API_KEY" if self.provider == "anthropic" else "OPENAI_API_KEY"

    def availability(self) -> str | None:
        return self._check(self.model)

    def _check(self, model: str | None) -> str | None:
        if not self.binary:
            return "opencode binary not found (set RDEV_OPENCODE_BIN)"
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            return f"opencode binary {self.binary} is not an executable file"
        if self.provider not in ("openai", "anthropic"):
            return f"unknown opencode provider {self.provider!r} (use openai or anthropic)"
        if self.provider == "openai" and not self._base_url():
            return "no model API URL for opencode (set OPENCODE_PROVIDER_URL or OPENAI_BASE_URL)"
        if not model:
            return "no model configured for opencode (set RDEV_OPENCODE_MODEL)"
        return None

    def config(self, model: str) -> dict[str, Any]:
        """The opencode.json for one run. Holds no secret: the key is ``{env:VAR}``."""
        model_entry: dict[str, Any] = {"name": model, "tool_call": True, "limit": self.limits}
        if self.cost[0] is not None or self.cost[1] is not None:
            model_entry["cost"] = {"input": self.cost[0] or 0, "output": self.cost[1] or 0}
        options: dict[str, Any] = {}
        if self._base_url():
            options["baseURL"] = self._base_url()
        if self._provider_env.get(self._key_var()):
            options["apiKey"] = "{env:" + self._key_var() + "}"
        if self.provider == "anthropic":
            provider_id = "anthropic"
            provider: dict[str, Any] = {"options": options, "models": {model: model_entry}}
        else:
            provider_id = PROVIDER_ID
            provider = {
                "npm": "@ai-sdk/openai-compatible", "name": "rdev",
                "options": options, "models": {model: model_entry},
            }  # fmt: skip
        full = f"{provider_id}/{model}"
        return {
            "$schema": "https://opencode.ai/config.json",
            "provider": {provider_id: provider},
            "model": full,
            "small_model": full,
            "autoupdate": False,
            "share": "disabled",
            "snapshot": False,
            "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
        }

    def _prepare(self, dirs: RunDirs, model: str) -> dict[str, str]:
        """Writes the config and seeds the config dir; returns the run's extra env."""
        xdg = {
            "XDG_CONFIG_HOME": dirs.home / ".config",
            "XDG_DATA_HOME": dirs.home / ".local" / "share",
            "XDG_CACHE_HOME": dirs.home / ".cache",
            "XDG_STATE_HOME": dirs.home / ".local" / "state",
        }
        config_dir = xdg["XDG_CONFIG_HOME"] / "opencode"
        (config_dir / "node_modules").mkdir(parents=True, exist_ok=True)
        (config_dir / "package.json").write_text(json.dumps(_PLUGIN_PACKAGE))
        (config_dir / "package-lock.json").write_text(json.dumps(_PLUGIN_LOCK))
        config_file = dirs.scratch / "opencode.json"
        config_file.write_text(json.dumps(self.config(model), indent=2))
        return {
            **{k: str(v) for k, v in xdg.items()},
            "OPENCODE_CONFIG": str(config_file),
            **OPENCODE_FIXED_ENV,
        }

    async def cli_version(self) -> str | None:
        if self._version is None and self.binary and os.access(self.binary, os.X_OK):
            self._version = await version_of(self.binary, OPENCODE_FIXED_ENV, 60)
        return self._version

    # --- running -------------------------------------------------------------------------

    async def run(self, request: AgentRequest, log: LogSink, cancel: asyncio.Event) -> AgentResult:
        model = request.model or self.model
        reason = self._check(model)
        if reason or not model:
            return AgentResult(success=False, error=reason or "no model")
        version = await self.cli_version()
        scrub = scrubber_for(self._provider_env, request.env)
        stream = OpenCodeStream(max_turns=request.max_turns, max_cost_usd=request.max_cost_usd)

        async def emit(text: str | None) -> None:
            for part in (text or "").splitlines():
                await log(scrub.scrub(part))

        async def on_line(line: str) -> str | None:
            await emit(stream.feed(line))
            return STOP if stream.stop_reason else None

        async def on_stderr(line: str) -> str | None:
            await emit(stream.feed_log(line, self.max_api_attempts))
            return STOP if stream.stop_reason else None

        # The prompt goes on stdin, which `opencode run` reads to EOF: a message given as
        # an argument gets wrapped in double quotes when it contains a space.
        argv = [str(self.binary), "run", "--format", "json", "--print-logs", "--log-level", "WARN"]
        prompt = request.prompt
        if request.system_prompt:  # `opencode run` has no system prompt flag
            prompt = f"{request.system_prompt}\n\n{prompt}"
        with run_dirs(request) as dirs:
            extra = {**self._provider_env, **request.env, **self._prepare(dirs, model)}
            out = await run_agent_process(
                argv,
                cwd=request.workdir,
                env=minimal_env_for(dirs, extra),
                timeout_seconds=request.timeout_seconds,
                cancel=cancel,
                on_line=on_line,
                on_stderr_line=on_stderr,
                stdin_data=prompt.encode(),
            )
        result = AgentResult(success=False, model=model, cli_version=version)
        stream.apply_to(result, out.returncode, cost_known=any(c is not None for c in self.cost))

        def exited(result: AgentResult, out: ProcessOutcome, stderr: str | None) -> None:
            failed_exit = result.error and result.error.startswith("opencode exited")
            if not result.success and failed_exit and stderr:
                result.error = f"{result.error}: {short(stderr, 300)}"

        return agent_result(
            out, result, timeout_seconds=request.timeout_seconds, exited=exited, scrub=scrub.scrub
        )
