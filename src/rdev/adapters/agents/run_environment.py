"""Per-run directories and environment for agent processes.

Each run gets a private HOME (kept under the request's scratch dir, so state such as
``~/.claude.json`` stays out of the repository) and a fresh TMPDIR, deleted after the run:
OpenCode leaves a 5.5 MB native module in TMPDIR on every run (docs/agent-clis.md §2.7).
Only allowlisted provider variables from the worker's environment reach the agent.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rdev.adapters.agents.process import minimal_env, run_agent_process
from rdev.domain.secrets import SecretScrubber
from rdev.ports.agents import AgentRequest

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL|AUTH", re.IGNORECASE)


@dataclass(frozen=True)
class RunDirs:
    scratch: Path
    home: Path
    tmp: Path


@contextmanager
def run_dirs(request: AgentRequest) -> Iterator[RunDirs]:
    """HOME and TMPDIR for one run. Without ``request.scratch_dir`` a temp scratch dir is
    made and removed afterwards; TMPDIR is always removed afterwards."""
    owned = request.scratch_dir is None
    scratch = (
        Path(tempfile.mkdtemp(prefix="rdev-agent-")) if owned else Path(request.scratch_dir)  # type: ignore[arg-type]
    )
    home = scratch / "home"
    home.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tmp-", dir=scratch))
    try:
        yield RunDirs(scratch=scratch, home=home, tmp=tmp)
    finally:
        shutil.rmtree(scratch if owned else tmp, ignore_errors=True)


def allowlisted(base_env: Mapping[str, str], allowlist: Iterable[str]) -> dict[str, str]:
    """The allowlisted variables that are set (and non-empty) in ``base_env``."""
    return {k: base_env[k] for k in allowlist if base_env.get(k)}


def scrubber_for(*envs: Mapping[str, str]) -> SecretScrubber:
    """A scrubber that knows every value of a secret-looking variable in ``envs``."""
    scrubber = SecretScrubber()
    for env in envs:
        for name, value in env.items():
            if _SECRET_NAME.search(name):
                scrubber.add(value)
    return scrubber


def minimal_env_for(dirs: RunDirs, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The minimal environment with this run's HOME and TMPDIR."""
    return minimal_env(dirs.home, dirs.tmp, extra)


def find_binary(
    explicit: str | None, env_var: str, name: str, source: Mapping[str, str]
) -> str | None:
    """The agent CLI: the given path, else ``$env_var``, else ``name`` on the source PATH."""
    return explicit or source.get(env_var) or shutil.which(name, path=source.get("PATH"))


async def version_of(binary: str, extra_env: Mapping[str, str], limit_seconds: float) -> str | None:
    """First word of ``<binary> --version`` ("2.1.197 (Claude Code)" -> "2.1.197"), run in
    a throw-away HOME so the probe leaves nothing behind."""
    with tempfile.TemporaryDirectory(prefix="rdev-version-") as tmp:
        home = Path(tmp)
        out = await run_agent_process(
            [binary, "--version"],
            cwd=home,
            env=minimal_env(home, home, dict(extra_env)),
            timeout_seconds=limit_seconds,
            cancel=asyncio.Event(),
        )
    words = " ".join(out.stdout_lines).split()
    return words[0] if out.returncode == 0 and words else None
