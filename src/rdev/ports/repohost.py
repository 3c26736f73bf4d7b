"""The RepoHost port: create and delete the git repository behind a project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class CreatedRepo:
    clone_url: str
    web_url: str | None = None
    #: Credential the server keeps for the project (None for the local host: it mints its own).
    credential: str | None = None


class RepoHost(Protocol):
    name: str

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        """Create the repository; when ``scaffold`` is given, push it as the first commit."""
        ...

    async def delete(self, name: str, options: dict[str, Any]) -> None: ...
