"""Claude Code and OpenCode end to end: a real ``rdev serve``, a real ``rdev worker`` that
runs the REAL agent CLI (pinned, from the npm cache folder), a scripted model API on
127.0.0.1 that the CLI is pointed at, and a token-protected git smart-HTTP server.

Every scenario runs for each CLI. The success path runs on both database backends, the
others on SQLite (the server side of a failure, a retry or a cancel is the same code).
Tests of one CLI share an xdist group, so a ``--dist loadgroup`` run (the README's) has
at most one run of each CLI at a time: their timing stays sane on a small machine.
The worker passes only allowlisted variables to the agent; the allowlist here adds
RDEV_TEST_MARKER, so the test can find every process the agent started
(``/proc/<pid>/environ``) and prove none is left.
"""

# ruff: noqa: F811  (pytest fixtures imported from tests.fixtures are parameter names)

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rdev.config import Settings
from tests.fixtures.agent_clis import (  # noqa: F401
    CLAUDE_VERSION,
    OPENCODE_VERSION,
    claude_bin,
    group_gone,
    marked_processes,
    opencode_bin,
    wait_for_marked_command,
)
from tests.fixtures.git_server import git_server  # noqa: F401
from tests.fixtures.model_server import (
    Fail,
    Hang,
    ScriptedModelServer,
    Step,
    Text,
    ToolCall,
    closed_port_url,
)
from tests.fixtures.processes import Proc, RdevServer, wait_for_status

pytestmark = pytest.mark.e2e

API_KEY = "sk-e2e-model-key-7c1d9a"
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])
#: A file the repo already tracks under an agent-private folder, and the command that
#: changes it, writes untracked agent-private files next to it, and lists the names (only)
#: of the variables the agent was given.
TRACKED_PRIVATE = ".claude/tracked.md"
PRIVATE_WRITES = (
    "mkdir -p .claude .opencode && echo '{}' > .claude/settings.local.json"
    " && echo '{}' > .opencode/state.json && echo changed >> .claude/tracked.md"
    " && env | cut -d= -f1 | sort > env-names.txt"
)


# --- the scripted model API, aware of the build's checkout ----------------------------

_CWD = re.compile(r"[Ww]orking directory: ([^\s\"\\]+)")


class CheckoutModelServer(ScriptedModelServer):
    """Fills ``{cwd}`` in scripted tool inputs with the agent's working directory, read
    from the call's system prompt: the worker's checkout is a temp dir the test cannot
    know in advance, and both CLIs want absolute paths for their edit tools."""

    def __init__(self) -> None:
        super().__init__()
        self.cwd = ""

    async def _respond(self, req: Any, writer: asyncio.StreamWriter) -> bool:
        found = _CWD.search(json.dumps(req.body)) if req.body else None
        if found:
            self.cwd = found.group(1)
        return await super()._respond(req, writer)

    def _next_step(self, side_call: bool) -> Step | None:
        step = super()._next_step(side_call)
        if isinstance(step, ToolCall):
            filled = {
                k: v.replace("{cwd}", self.cwd) if isinstance(v, str) else v
                for k, v in step.input.items()
            }
            step = ToolCall(step.name, filled, step.delay)
        return step

    def rescript(self, *steps: Step) -> None:
        """Replace whatever is left of the script (e.g. a sticky failure)."""
        with self._lock:
            self.steps.clear()
            self.steps.extend(steps)


@pytest.fixture
def model_api() -> Iterator[CheckoutModelServer]:
    server = CheckoutModelServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- the two CLIs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cli:
    agent: str
    version: str
    bin_fixture: str

    def worker_env(self, binary: Path, api: CheckoutModelServer | None) -> dict[str, str]:
        """The worker's environment pointing the CLI at ``api`` (None: a closed port)."""
        if self.agent == "claude-code":
            url = api.url if api else closed_port_url()
            return {
                "RDEV_CLAUDE_BIN": str(binary),
                "ANTHROPIC_BASE_URL": url,
                "ANTHROPIC_API_KEY": API_KEY,
            }
        url = api.openai_base_url if api else closed_port_url() + "/v1"
        return {
            "RDEV_OPENCODE_BIN": str(binary),
            "RDEV_OPENCODE_MODEL": "mock-model",
            "RDEV_OPENCODE_COST_PER_MTOK_INPUT": "3",
            "RDEV_OPENCODE_COST_PER_MTOK_OUTPUT": "15",
            "OPENAI_BASE_URL": url,
            "OPENAI_API_KEY": API_KEY,
        }

    def edit_readme(self) -> list[Step]:
        """Tool calls that change README.md from "hello" to "hello world"."""
        if self.agent == "claude-code":  # Claude refuses to edit a file it has not read
            return [
                ToolCall("Read", {"file_path": "{cwd}/README.md"}),
                ToolCall(
                    "Edit",
                    {"file_path": "{cwd}/README.md", "old_string": "hello",
                     "new_string": "hello world"},
                ),
            ]  # fmt: skip
        return [
            ToolCall(
                "edit",
                {"filePath": "{cwd}/README.md", "oldString": "hello", "newString": "hello world"},
            )
        ]

    def bash(self, command: str, delay: float = 0.0) -> ToolCall:
        if self.agent == "claude-code":
            return ToolCall("Bash", {"command": command}, delay=delay)
        return ToolCall("bash", {"command": command, "description": "run a command"}, delay=delay)

    @property
    def tool_line(self) -> str:
        """How the adapter logs a shell tool call."""
        return "tool Bash: " if self.agent == "claude-code" else "tool bash: "


CLAUDE = Cli("claude-code", CLAUDE_VERSION, "claude_bin")
OPENCODE = Cli("opencode", OPENCODE_VERSION, "opencode_bin")
EACH_CLI = pytest.mark.parametrize(
    "cli",
    [
        pytest.param(CLAUDE, id="claude", marks=pytest.mark.xdist_group("agents-e2e-claude")),
        pytest.param(OPENCODE, id="opencode", marks=pytest.mark.xdist_group("agents-e2e-opencode")),
    ],
)


# --- the running system ----------------------------------------------------------------


@dataclass
class Stack:
    server: RdevServer
    git: Any
    worker_token: str
    marker: str = field(default_factory=lambda: uuid.uuid4().hex)

    def start_worker(self, env: dict[str, str]) -> Proc:
        allow = [*Settings().agent_env_allowlist, "RDEV_TEST_MARKER"]
        full = {
            "RDEV_TEST_MARKER": self.marker,
            "UNRELATED_SECRET": "not-for-the-agent",
            "RDEV_AGENT_ENV_ALLOWLIST": ",".join(allow),
            **env,
        }
        return self.server.start_worker(self.worker_token, env=full)

    async def project(self, api: httpx.AsyncClient, files: dict[str, str] | None = None) -> str:
        name = "agents-" + uuid.uuid4().hex[:8]
        url = self.git.make_repo(name, files or {"README.md": "hello\n"})
        r = await api.post(
            "/projects",
            json={"name": name, "repo_url": url, "default_branch": "main",
                  "git_credential": self.git.token},
        )  # fmt: skip
        assert r.status_code == 201, r.text
        return name

    def agent_processes(self) -> list[int]:
        """Live processes started for an agent (the worker itself carries the marker too)."""
        workers = {w.pid for w in self.server.workers}
        return [p for p in marked_processes(self.marker) if p not in workers]


@pytest.fixture
async def stack(db_url: str, tmp_path: Path, git_server: Any) -> AsyncIterator[Stack]:
    server = RdevServer(
        db_url, tmp_path / "data", tmp_path,
        RDEV_RETRY_DELAY_SECONDS="1", RDEV_DEFAULT_AGENT="claude-code",
    )  # fmt: skip
    server.start()
    try:
        yield Stack(server, git_server, await server.token(["workers:run"]))
    finally:
        for worker in server.workers:
            worker.stop()
        # `rdev serve` takes ~5 s to stop gracefully; nothing here depends on that.
        server.kill()


class AgentGroups:
    """Records the process groups of the agent's processes while a build runs."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.groups: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    async def _watch(self) -> None:
        while True:
            # Read afresh: workers start after the watch does, and a worker's child
            # between fork and setsid is still in the worker's own group.
            workers = {w.pid for w in self.stack.server.workers}
            for pid in self.stack.agent_processes():
                with contextlib.suppress(ProcessLookupError):
                    pgid = os.getpgid(pid)
                    if pgid not in workers:  # the worker's own git children
                        self.groups.add(pgid)
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> AgentGroups:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@pytest.fixture
def agent_bin(request: pytest.FixtureRequest, cli: Cli) -> Path:
    """The CLI's binary; skips (or fails, in CI) before any server starts when missing."""
    return Path(request.getfixturevalue(cli.bin_fixture))


async def submit(api: httpx.AsyncClient, project: str, cli: Cli, **spec: Any) -> str:
    body = {"prompt": "Change the README", "agent": cli.agent, **spec}
    r = await api.post(f"/projects/{project}/builds", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["task_id"])


async def log_lines(api: httpx.AsyncClient, task_id: str) -> list[str]:
    r = await api.get(f"/builds/{task_id}/logs")
    assert r.status_code == 200, r.text
    return [line for c in r.json()["chunks"] for line in c["text"].splitlines()]


async def wait_for_log(api: httpx.AsyncClient, task_id: str, prefix: str, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(line.startswith(prefix) for line in await log_lines(api, task_id)):
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"no log line {prefix!r} within {limit}s")


def assert_nothing_left(stack: Stack, watcher: AgentGroups) -> None:
    assert watcher.groups, "the agent's processes were never seen"
    assert all(group_gone(g) for g in watcher.groups)
    deadline = time.monotonic() + 60  # only a failure waits this long
    while stack.agent_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stack.agent_processes() == []


# --- the tests -------------------------------------------------------------------------
# Waits are failure-only bounds: under an 8-worker run on 2 cores an OpenCode build takes
# ~50 s, so they are several times that (within the 300 s test timeout).


@EACH_CLI
async def test_agent_edit_is_committed_and_pushed_with_the_clis_own_cost_tokens_and_turns(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
    tmp_path: Path,
) -> None:
    model_api.script(*cli.edit_readme(), cli.bash(PRIVATE_WRITES), Text("README updated"))
    calls = len(cli.edit_readme()) + 2
    async with stack.server.client() as api:
        project = await stack.project(api, {"README.md": "hello\n", TRACKED_PRIVATE: "tracked\n"})
        base = stack.git.head(project)
        stack.start_worker(cli.worker_env(agent_bin, model_api))
        task_id = await submit(api, project, cli, auto_commit=True, auto_push=True)
        build = await wait_for_status(api, task_id, {"completed", "failed"}, timeout=240)
        logs = await log_lines(api, task_id)

    assert build["status"] == "completed", build
    result = build["result"]
    # The change is committed and pushed; agent-private files only where already tracked.
    assert result["commit_sha"] == stack.git.head(project) != base
    back = stack.git.clone_back(project, tmp_path / "back")
    assert (back / "README.md").read_text() == "hello world\n"
    assert (back / TRACKED_PRIVATE).read_text() == "tracked\nchanged\n"
    assert not (back / ".claude" / "settings.local.json").exists()
    assert not (back / ".opencode").exists()
    assert {(c["path"], c["change"]) for c in result["files_changed"]} == {
        ("README.md", "modified"), (TRACKED_PRIVATE, "modified"), ("env-names.txt", "added"),
    }  # fmt: skip
    # Only allowlisted variables of the worker's environment reached the agent.
    names = set((back / "env-names.txt").read_text().split())
    assert {"RDEV_TEST_MARKER", "HOME", "PATH"} <= names
    assert ("ANTHROPIC_API_KEY" if cli is CLAUDE else "OPENAI_API_KEY") in names
    assert not names & {"UNRELATED_SECRET", "RDEV_CLAUDE_BIN", "RDEV_OPENCODE_BIN"}
    assert f"Build-Id: {task_id}" in stack.git.message(project)
    # Cost, tokens and turns: the CLI's own accounting of 100 in / 20 out per model call.
    art = result["artifacts"]
    assert len(model_api.main_calls()) == calls
    assert (art["input_tokens"], art["output_tokens"], art["turns"]) == (
        100 * calls, 20 * calls, calls,
    )  # fmt: skip
    if cli is CLAUDE:  # Claude prices by its own table (Opus: $5 / $25 per 1M)
        assert art["cost_usd"] == pytest.approx(0.001 * calls)
    else:  # OpenCode by the prices the worker is configured with ($3 / $15 per 1M)
        assert art["cost_usd"] == pytest.approx(0.0006 * calls)
    assert result["output"] == "README updated"
    # Reproducibility: agent, CLI version, model, rendered prompt and base commit.
    info = build["agent"]
    assert info["agent"] == cli.agent
    assert info["cli_version"] == cli.version
    assert info["model"] == ("claude-opus-4-8" if cli is CLAUDE else "mock-model")
    assert info["base_commit"] == base
    assert info["session_id"]
    assert build["rendered_prompt"] == "Change the README"
    # Progress streamed to the build log, one readable line per tool call.
    assert any(line.startswith(cli.tool_line) and "settings.local.json" in line for line in logs)
    assert "assistant: README updated" in logs
    # The provider key reached the model API and nothing else.
    first = model_api.main_calls()[0].headers
    assert API_KEY in (first.get("x-api-key", ""), first.get("authorization", "")[7:])
    assert API_KEY not in json.dumps(build) + "\n".join(logs)
    assert API_KEY not in stack.server.log() + stack.server.workers[0].log()
    assert stack.agent_processes() == []


@SQLITE_ONLY
@EACH_CLI
@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (401, "model API rejected the credentials (401)"),
        (500, "model API"),
        ("unreachable", "model API unreachable"),
    ],
)
async def test_model_api_failure_fails_the_build_fast_with_a_clear_reason(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
    failure: int | str,
    reason: str,
) -> None:
    if isinstance(failure, int):
        model_api.script(Fail(failure))
    async with stack.server.client() as api:
        project = await stack.project(api)
        stack.start_worker(
            cli.worker_env(agent_bin, model_api if failure != "unreachable" else None)
        )
        task_id = await submit(api, project, cli, auto_commit=True, auto_push=True)
        await wait_for_status(api, task_id, {"running", "failed"}, timeout=120)
        build = await wait_for_status(api, task_id, {"completed", "failed"}, timeout=180)
        events = (await api.get(f"/builds/{task_id}/events")).json()

    assert build["status"] == "failed", build
    error = build["result"]["error"]
    assert error.startswith(reason), error
    if failure == 500:
        assert "500" in error or "server had an error" in error, error
    assert API_KEY not in error
    if isinstance(failure, int):
        # fast = within the CLI's capped retry budget, not its default (Claude Code: 10
        # retries unless CLAUDE_CODE_MAX_RETRIES, which rdev sets to 2; OpenCode: a fixed 5
        # for 5xx, none for 401; docs/agent-clis.md §1.6, §2.5)
        budget = {"claude-code": 3, "opencode": 6 if failure >= 500 else 1}[cli.agent]
        assert 1 <= len(model_api.main_calls()) <= budget, model_api.main_calls()
    assert [e["to"] for e in events] == ["pending", "running", "failed"]  # not retried
    assert build["result"]["commit_sha"] is None
    assert stack.agent_processes() == []


@SQLITE_ONLY
@EACH_CLI
async def test_rate_limited_build_goes_back_to_pending_and_completes_when_the_api_recovers(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
) -> None:
    # Every call of the first attempt fails, the CLI's own retries too (after 1 s each).
    model_api.script(Fail(429, headers={"retry-after": "1"}))
    async with stack.server.client() as api:
        project = await stack.project(api)
        stack.start_worker(cli.worker_env(agent_bin, model_api))
        task_id = await submit(api, project, cli, auto_commit=True, auto_push=True)
        deadline = time.monotonic() + 180
        while True:
            events = (await api.get(f"/builds/{task_id}/events")).json()
            if [e["to"] for e in events][-2:] == ["running", "pending"]:
                break
            assert time.monotonic() < deadline, events
            assert events[-1]["to"] in ("pending", "running"), events
            await asyncio.sleep(0.2)
        model_api.rescript(*cli.edit_readme(), Text("README updated"))
        build = await wait_for_status(api, task_id, {"completed", "failed"}, timeout=240)
        events = (await api.get(f"/builds/{task_id}/events")).json()

    assert build["status"] == "completed", build
    retry = events[2]
    assert retry["to"] == "pending" and "429" in retry["reason"], retry
    assert retry["reason"].startswith("retryable failure, retry in 1s")
    assert [e["to"] for e in events][-2:] == ["running", "completed"]
    assert stack.git.read(project, "README.md") == "hello world\n"
    assert build["result"]["commit_sha"] == stack.git.head(project)


@SQLITE_ONLY
@EACH_CLI
async def test_build_past_its_timeout_fails_with_reason_timeout_and_leaves_no_process(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
) -> None:
    model_api.script(Hang())
    timeout = 8 if cli is CLAUDE else 15  # OpenCode takes ~6 s to reach the model API
    async with stack.server.client() as api, AgentGroups(stack) as watcher:
        project = await stack.project(api)
        stack.start_worker(cli.worker_env(agent_bin, model_api))
        task_id = await submit(api, project, cli, timeout_seconds=timeout)
        build = await wait_for_status(api, task_id, {"completed", "failed"}, timeout=180)

    assert build["status"] == "failed", build
    assert build["result"]["error"] == f"timeout after {timeout}s"
    assert_nothing_left(stack, watcher)


@SQLITE_ONLY
@EACH_CLI
async def test_cancel_mid_run_stops_the_agent_and_its_tool_and_keeps_the_partial_log(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
) -> None:
    # OpenCode logs a tool call when it finishes: the first one shows in the log, the
    # second one is still running when the cancel comes.
    model_api.script(cli.bash("echo started > started.txt"), cli.bash("sleep 300"), Text("x"))
    async with stack.server.client() as api, AgentGroups(stack) as watcher:
        project = await stack.project(api)
        stack.start_worker(cli.worker_env(agent_bin, model_api))
        task_id = await submit(api, project, cli, auto_commit=True, auto_push=True)
        await wait_for_log(api, task_id, cli.tool_line + "echo started", limit=120)
        # The second tool's sleep runs now, and the watcher has its group.
        await wait_for_marked_command(stack.marker, ["sleep", "300"], watcher.groups)
        r = await api.post(f"/builds/{task_id}/cancel")
        assert r.status_code in (200, 202), r.text
        # The tool sleeps 300 s: only the cancel can end the build within the wait.
        build = await wait_for_status(api, task_id, {"cancelled", "completed", "failed"})
        logs = await log_lines(api, task_id)

    assert build["status"] == "cancelled", build
    assert any(line.startswith(cli.tool_line + "echo started") for line in logs), logs
    assert any(line.startswith("rdev: running agent") for line in logs)
    assert build["result"]["commit_sha"] is None
    assert stack.git.read(project, "started.txt") is None
    assert len(watcher.groups) >= 2, watcher.groups  # the CLI's group and its tool's own
    assert_nothing_left(stack, watcher)


@SQLITE_ONLY
@EACH_CLI
async def test_build_over_max_turns_fails_with_that_reason(
    cli: Cli,
    agent_bin: Path,
    stack: Stack,
    model_api: CheckoutModelServer,
) -> None:
    # The second answer is slow: the run is stopped after turn 1 before it could arrive
    # (a minute: surely, however loaded the machine).
    model_api.script(cli.bash("echo one"), cli.bash("echo two > two.txt", delay=60.0), Text("done"))
    async with stack.server.client() as api:
        project = await stack.project(api)
        stack.start_worker(cli.worker_env(agent_bin, model_api))
        task_id = await submit(api, project, cli, max_turns=1, auto_commit=True, auto_push=True)
        build = await wait_for_status(api, task_id, {"completed", "failed"}, timeout=240)

    assert build["status"] == "failed", build
    assert build["result"]["error"].startswith("max turns reached"), build["result"]
    assert build["result"]["commit_sha"] is None
    assert stack.git.read(project, "two.txt") is None


async def test_build_for_an_agent_no_worker_offers_stays_pending_and_says_why(
    stack: Stack,
) -> None:
    async with stack.server.client() as api:
        project = await stack.project(api)
        worker = stack.start_worker(
            {"RDEV_COMMAND_AGENT": "true", "RDEV_OPENCODE_BIN": "/nonexistent",
             "RDEV_CLAUDE_BIN": "/nonexistent"}
        )  # fmt: skip
        deadline = time.monotonic() + 120  # only a failure waits this long
        while True:
            items = (await api.get("/workers")).json()
            if items:
                break
            assert time.monotonic() < deadline, worker.log()[-2000:]
            await asyncio.sleep(0.2)
        task_id = await submit(api, project, OPENCODE)
        # A later build the worker can take: once it is done, the worker has claimed since
        # the first was queued (instead of sleeping through "a few claim rounds").
        later = await submit(api, project, Cli("command", "", ""))
        done = await wait_for_status(api, later, {"completed", "failed"})
        assert done["status"] == "completed", done
        build = (await api.get(f"/builds/{task_id}")).json()

    assert build["status"] == "pending", build
    assert build["pending_reason"] == "no online worker offers agent opencode"
    (entry,) = items
    assert entry["agents"] == ["command"]
    assert entry["agent_notes"] == {
        "claude-code": "claude binary /nonexistent is not an executable file",
        "opencode": "opencode binary /nonexistent is not an executable file",
    }
    assert "opencode binary /nonexistent is not an executable file" in worker.log()
