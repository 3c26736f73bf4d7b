"""The GitOperations port: clone, inspect, commit and push a working copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rdev.domain.models import FileChange


class GitError(Exception):
    """A git command failed. The message is already scrubbed of secrets."""


class PushRejected(GitError):
    """The remote refused the push (non-fast-forward after the retries)."""


@dataclass(frozen=True)
class GitAuthor:
    name: str = "rdev"
    email: str = "rdev@localhost"


class GitOperations(Protocol):
    async def clone(
        self, url: str, dest: Path, branch: str, default_branch: str, credential: str | None
    ) -> str:
        """Clone at ``branch`` (created from ``default_branch`` if missing); return HEAD sha."""
        ...

    async def changed_files(
        self, workdir: Path, exclude: list[str] | None = None
    ) -> list[FileChange]:
        """Changes against HEAD; ``exclude`` patterns are left out unless already tracked."""
        ...

    async def commit(
        self, workdir: Path, message: str, author: GitAuthor, exclude: list[str] | None = None
    ) -> str | None:
        """Stage everything (minus ``exclude`` patterns not tracked yet) and commit; sha or None."""
        ...

    async def push(
        self, workdir: Path, branch: str, credential: str | None, attempts: int = 3
    ) -> str:
        """Push HEAD to ``branch``, rebasing on non-fast-forward; return the pushed sha."""
        ...
