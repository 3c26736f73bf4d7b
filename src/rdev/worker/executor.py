"""The build executor: one claimed build from fresh workdir to BuildResult.

fresh temp workdir -> clone (branch, created from the default branch when missing) ->
run the agent through the CodeAgent port -> files changed -> commit -> push -> result.
Every text that leaves here passes the secret scrubber.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from rdev.domain.commit_message import commit_message
from rdev.domain.models import BuildResult, ClaimedTask
from rdev.domain.secrets import SecretScrubber
from rdev.ports.agents import AgentRequest, AgentResult, CodeAgent, LogSink
from rdev.ports.git import GitAuthor, GitError, GitOperations

log = structlog.get_logger(__name__)

#: Files agents write for themselves; never committed unless the repo already tracks them.
DEFAULT_PRIVATE_PATHS = [".claude/", ".opencode/", ".rdev/", "CLAUDE.local.md"]


@dataclass
class ExecutorConfig:
    workdir_root: Path | None = None
    keep_failed_workdirs: bool = False
    author: GitAuthor = GitAuthor()
    default_timeout_seconds: int = 1800
    private_paths: tuple[str, ...] = tuple(DEFAULT_PRIVATE_PATHS)


#: Written into a failed build's workdir kept for inspection (keep_failed_workdirs): the
#: start-up sweep leaves such a folder alone.
KEPT_MARKER = ".rdev-kept"


def worker_workdir_root(base: Path | None, worker_name: str) -> Path:
    """The folder holding one worker's build workdirs (under ``base``, default the system
    temp folder). One folder per worker name: a restarted worker sweeps only its own."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", worker_name)[:64] or "worker"
    return (base or Path(tempfile.gettempdir())) / f"rdev-worker-{safe}"


class BuildExecutor:
    def __init__(
        self,
        git: GitOperations,
        agents: Mapping[str, CodeAgent],
        config: ExecutorConfig,
        secrets: list[str] | None = None,
    ) -> None:
        self.git = git
        self.agents = agents
        self.config = config
        self._known_secrets = [s for s in secrets or [] if s]

    def scrubber(self, task: ClaimedTask) -> SecretScrubber:
        return SecretScrubber([task.git_credential, *self._known_secrets])

    def sweep_left_behind(self) -> int:
        """Remove the workdirs a previous process of this worker left (it was killed before
        it could clean up); kept failed workdirs stay. Returns how many were removed."""
        root = self.config.workdir_root
        if root is None or not root.is_dir():
            return 0
        removed = 0
        for child in root.iterdir():
            left = child.is_dir() and child.name.startswith("rdev-")
            if left and not (child / KEPT_MARKER).exists():
                shutil.rmtree(child, ignore_errors=True)
                removed += 1
        return removed

    async def execute(
        self, task: ClaimedTask, emit: LogSink, cancel: asyncio.Event
    ) -> tuple[BuildResult, dict[str, Any]]:
        """Run the build; never raises for build failures (they become the result)."""
        started = time.monotonic()
        scrub = self.scrubber(task)
        spec = task.spec
        info: dict[str, Any] = {"agent": spec.agent}

        async def say(line: str) -> None:
            await emit(scrub.scrub(line))

        def result(**kw: Any) -> BuildResult:
            for key in ("output", "error"):
                if kw.get(key):
                    kw[key] = scrub.scrub(kw[key])
            return BuildResult(duration_ms=int((time.monotonic() - started) * 1000), **kw)

        root = self.config.workdir_root
        if root:
            root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"rdev-{task.task_id[:12]}-", dir=root))
        repo, scratch = workdir / "repo", workdir / "scratch"
        scratch.mkdir()
        failed = True
        try:
            agent = self.agents.get(spec.agent or "")
            if agent is None or agent.availability():
                return result(
                    success=False, error=f"this worker does not offer agent {spec.agent}"
                ), info
            project = task.project
            branch = spec.branch or project.default_branch
            await say(f"rdev: cloning {project.name} at branch {branch}")
            try:
                base = await self.git.clone(
                    project.repo_url, repo, branch, project.default_branch, task.git_credential
                )
            except GitError as exc:
                return result(success=False, error=f"clone failed: {exc}"), info
            info["base_commit"] = base or None
            if cancel.is_set():
                return result(success=False, cancelled=True, error="cancelled"), info
            settings = project.agent_settings
            request = AgentRequest(
                workdir=repo,
                prompt=task.rendered_prompt,
                timeout_seconds=float(spec.timeout_seconds or self.config.default_timeout_seconds),
                model=spec.model or settings.get("model"),
                max_turns=spec.max_turns or settings.get("max_turns"),
                max_cost_usd=spec.max_cost_usd or settings.get("max_cost_usd"),
                system_prompt=spec.system_prompt or settings.get("system_prompt"),
                scratch_dir=scratch,
            )
            await say(f"rdev: running agent {spec.agent}")
            ar = await agent.run(request, say, cancel)
            info.update(_agent_info(ar))
            files = await self._changed(repo)
            artifacts = _artifacts(ar)
            if ar.cancelled or (cancel.is_set() and not ar.success):
                return result(
                    success=False,
                    cancelled=True,
                    error=ar.error or "cancelled",
                    output=ar.output,
                    files_changed=files,
                    artifacts=artifacts,
                ), info
            if not ar.success:
                return result(
                    success=False,
                    retryable=ar.retryable,
                    retry_after_seconds=ar.retry_after_seconds,
                    error=ar.error or "the agent failed",
                    output=ar.output,
                    files_changed=files,
                    artifacts=artifacts,
                ), info
            sha = None
            if spec.auto_commit and files:
                try:
                    sha = await self.git.commit(
                        repo,
                        commit_message(task.rendered_prompt, task.task_id),
                        self.config.author,
                        exclude=list(self.config.private_paths),
                    )
                except GitError as exc:
                    return result(
                        success=False,
                        error=f"commit failed: {exc}",
                        output=ar.output,
                        files_changed=files,
                        artifacts=artifacts,
                    ), info
                await say(f"rdev: committed {sha}")
                if spec.auto_push and sha:
                    try:
                        sha = await self.git.push(repo, branch, task.git_credential)
                    except GitError as exc:
                        return result(
                            success=False,
                            error=f"push failed: {exc}",
                            output=ar.output,
                            files_changed=files,
                            artifacts=artifacts,
                        ), info
                    await say(f"rdev: pushed {sha} to {branch}")
                    info["pushed"] = True
            failed = False
            return result(
                success=True,
                output=ar.output,
                commit_sha=sha,
                files_changed=files,
                artifacts=artifacts,
            ), info
        except Exception as exc:  # the build must end with a truthful result, whatever broke
            log.exception("build execution crashed", task_id=task.task_id)
            return result(success=False, error=f"worker error: {type(exc).__name__}: {exc}"), info
        finally:
            if failed and self.config.keep_failed_workdirs:
                with contextlib.suppress(OSError):
                    (workdir / KEPT_MARKER).touch()
                await say(f"rdev: kept workdir {workdir}")
            else:
                await asyncio.to_thread(shutil.rmtree, workdir, ignore_errors=True)

    async def _changed(self, repo: Path) -> list[Any]:
        try:
            return await self.git.changed_files(repo, exclude=list(self.config.private_paths))
        except GitError:
            return []


def _agent_info(ar: AgentResult) -> dict[str, Any]:
    out = {
        "cli_version": ar.cli_version,
        "model": ar.model,
        "session_id": ar.session_id,
    }
    return {k: v for k, v in out.items() if v is not None}


def _artifacts(ar: AgentResult) -> dict[str, Any]:
    out = {
        "cost_usd": ar.cost_usd,
        "input_tokens": ar.input_tokens,
        "output_tokens": ar.output_tokens,
        "turns": ar.turns,
        "session_id": ar.session_id,
        "model": ar.model,
    }
    return {k: v for k, v in out.items() if v is not None}
