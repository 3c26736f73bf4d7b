"""The RepoHost port: create and delete the git repository behind a project."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import SecretStr


@dataclass
class CreatedRepo:
    clone_url: str
    web_url: str | None = None
    #: Credential the server keeps for the project (None for the local host: it mints its own).
    credential: SecretStr | None = None


class RepoHost(Protocol):
    name: str

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        """Create the repository; when ``scaffold`` is given, push it as the first commit."""
        ...

    def clone_url(self, name: str) -> str | None:
        """The clone URL repository ``name`` has (or will have once created), when the host
        knows it without asking anyone; None when only creating it tells (a Gitea owner,
        the server's canonical URL). Scaffolds render it before the repository exists."""
        ...

    async def delete(self, name: str, options: dict[str, Any]) -> None:
        """Delete the repository; one that does not exist is not an error."""
        ...
