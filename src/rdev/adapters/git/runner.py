"""Runs the ``git`` binary: minimal environment, no prompts, a timeout, scrubbed errors.

Every git process rdev starts goes through :class:`GitRunner`, so the rules hold everywhere:

* the environment is built from scratch (PATH, HOME, locale, a few proxy/TLS variables):
  no inherited ``GIT_*`` tracing, no system or global gitconfig (``GIT_CONFIG_NOSYSTEM``,
  ``GIT_CONFIG_GLOBAL=/dev/null``), and hooks, fsmonitor and credential helpers are off;
* nothing can prompt: ``GIT_TERMINAL_PROMPT=0``, ``GIT_ASKPASS`` answers empty, ssh runs with
  ``BatchMode=yes``;
* every command has a timeout; on expiry the whole process group is killed;
* stderr is scrubbed of the known secrets before it lands in a :class:`GitError`, and
  authentication failures are recognised and reported as :class:`GitAuthFailed`.

Extra config (e.g. the credential header) travels as ``GIT_CONFIG_COUNT`` /
``GIT_CONFIG_KEY_n`` / ``GIT_CONFIG_VALUE_n``: it outranks the repository's own config and
never touches a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rdev.domain.secrets import SecretScrubber
from rdev.ports.git import GitError

#: Inherited from the parent when set: what git/curl/ssh legitimately need from the host.
PASSTHROUGH_ENV = (
    "PATH",
    "HOME",
    "TMPDIR",
    "SSH_AUTH_SOCK",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "GIT_SSL_CAINFO",
)

#: Config every command runs with. Hooks and fsmonitor would run code an agent may have
#: planted in the checkout; credential helpers could store or leak the token; ``ext::``
#: runs arbitrary commands.
BASE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("credential.helper", ""),
    ("protocol.ext.allow", "never"),
    ("advice.detachedHead", "false"),
    ("init.defaultBranch", "main"),
)

DEFAULT_SSH_COMMAND = "ssh -o BatchMode=yes -o ConnectTimeout=20"

_AUTH_PATTERNS = re.compile(
    r"Authentication failed|could not read (Username|Password)|terminal prompts disabled"
    r"|returned error: 40[13]|HTTP 40[13]|\b40[13] (Unauthorized|Forbidden)"
    r"|Permission denied \(publickey|Host key verification failed",
    re.IGNORECASE,
)


class GitAuthFailed(GitError):
    """The remote refused our credential (or none was given and one is needed)."""


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


class GitRunner:
    """Starts git processes with a controlled environment and a timeout.

    ``timeout`` bounds each command (seconds). ``ssh_command`` replaces the default
    ``ssh -o BatchMode=yes``; keep ``BatchMode=yes`` in it.
    """

    def __init__(
        self,
        *,
        git_bin: str = "git",
        timeout: float = 600.0,
        ssh_command: str = DEFAULT_SSH_COMMAND,
    ) -> None:
        self.git_bin = git_bin
        self.timeout = timeout
        self.ssh_command = ssh_command
        self._askpass = shutil.which("true") or "/bin/true"

    def environment(
        self, config: Sequence[tuple[str, str]] = (), extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        env.update(
            {
                "LC_ALL": "C",
                "LANG": "C",
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": os.devnull,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_ASKPASS": self._askpass,
                "SSH_ASKPASS": self._askpass,
                "GIT_SSH_COMMAND": self.ssh_command,
                # Abort a transfer that stalls below 1 KB/s for 60 s.
                "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
                "GIT_HTTP_LOW_SPEED_TIME": "60",
            }
        )
        pairs = [*BASE_CONFIG, *config]
        env["GIT_CONFIG_COUNT"] = str(len(pairs))
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        if extra:
            env.update(extra)
        return env

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path | None = None,
        config: Sequence[tuple[str, str]] = (),
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        scrubber: SecretScrubber | None = None,
        check: bool = True,
        time_limit: float | None = None,
    ) -> GitResult:
        """Run ``git <args>``; raise :class:`GitError` (scrubbed) on failure when ``check``."""
        scrub = (scrubber or SecretScrubber()).scrub
        limit = time_limit if time_limit is not None else self.timeout
        what = f"git {args[0]}" if args else "git"
        proc = await asyncio.create_subprocess_exec(
            self.git_bin,
            *args,
            cwd=str(cwd) if cwd else None,
            env=self.environment(config, env),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # own process group: a timeout kills git AND its helpers
        )
        try:
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), limit
            )
        except (TimeoutError, asyncio.CancelledError) as exc:
            _kill_group(proc)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise GitError(f"{what} timed out after {limit:g}s") from None
        result = GitResult(
            proc.returncode or 0,
            scrub(out.decode(errors="replace")),
            scrub(err.decode(errors="replace")),
        )
        if check and result.returncode != 0:
            raise error_for(what, result)
        return result


def error_for(what: str, result: GitResult) -> GitError:
    """The exception for a failed command; its text is already scrubbed."""
    detail = result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}"
    if len(detail) > 2000:
        detail = detail[-2000:]
    if _AUTH_PATTERNS.search(detail):
        return GitAuthFailed(f"{what}: authentication failed: {detail}")
    return GitError(f"{what} failed: {detail}")


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
