"""LocalRepoHost: bare repositories on this server's disk, served by GitSmartHTTPApp.

The all-in-one default: ``<data_dir>/repos/<name>.git``, cloned from
``<public_url>/git/<name>.git`` (the API mounts :class:`GitSmartHTTPApp` at ``/git``).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from pathlib import Path
from typing import Any

from rdev.adapters.git.runner import GitRunner
from rdev.adapters.repohost.git_http import InvalidRepoName, validate_repo_name
from rdev.domain.errors import Conflict, ValidationFailed
from rdev.ports.repohost import CreatedRepo

SCAFFOLD_AUTHOR = {
    "GIT_AUTHOR_NAME": "rdev",
    "GIT_AUTHOR_EMAIL": "rdev@localhost",
    "GIT_COMMITTER_NAME": "rdev",
    "GIT_COMMITTER_EMAIL": "rdev@localhost",
}


class LocalRepoHost:
    """RepoHost over bare repositories under ``repos_dir``.

    ``public_url`` is the server's external base URL (``http://127.0.0.1:8080``); clone URLs
    are ``{public_url}/git/{name}.git``. ``options`` are accepted and ignored.
    """

    name = "local"

    def __init__(self, repos_dir: Path, public_url: str, *, runner: GitRunner | None = None):
        self.repos_dir = Path(repos_dir)
        self.public_url = public_url.rstrip("/")
        self.runner = runner or GitRunner(timeout=120)

    def path_for(self, name: str) -> Path:
        """Where the bare repository ``name`` lives (validates the name)."""
        try:
            validate_repo_name(name)
        except InvalidRepoName as exc:
            raise ValidationFailed(str(exc), field="name") from None
        return self.repos_dir / f"{name}.git"

    def clone_url(self, name: str) -> str:
        """``{public_url}/git/{name}.git``: known before the repository exists."""
        return f"{self.public_url}/git/{name}.git"

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        """``git init --bare``; when ``scaffold`` is a non-empty dir, commit it as the first
        commit of ``default_branch``. An existing repository is a :class:`Conflict`."""
        path = self.path_for(name)
        await asyncio.to_thread(self.repos_dir.mkdir, parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(path.mkdir)
        except FileExistsError:
            raise Conflict(f"repository {name!r} already exists", field="name") from None
        try:
            await self.runner.run(["init", "-q", "--bare", "-b", default_branch, str(path)])
            await self.runner.run(["config", "http.receivepack", "true"], cwd=path)
            if scaffold is not None and await asyncio.to_thread(_has_files, Path(scaffold)):
                await self._commit_scaffold(path, Path(scaffold), default_branch)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, path, True)
            raise
        return CreatedRepo(clone_url=self.clone_url(name))

    async def delete(self, name: str, options: dict[str, Any]) -> None:
        """Remove the repository; deleting one that does not exist is not an error."""
        await asyncio.to_thread(shutil.rmtree, self.path_for(name), True)

    async def _commit_scaffold(self, bare: Path, scaffold: Path, branch: str) -> None:
        # Commit straight into the bare repository: the scaffold dir is the work tree, the
        # index a temp file. Nothing is copied, nothing is written into the scaffold.
        with tempfile.TemporaryDirectory(prefix="rdev-scaffold-") as tmp:
            env = {
                "GIT_DIR": str(bare),
                "GIT_WORK_TREE": str(scaffold),
                "GIT_INDEX_FILE": str(Path(tmp) / "index"),
                **SCAFFOLD_AUTHOR,
            }
            await self.runner.run(["add", "-A", "--", "."], cwd=scaffold, env=env)
            await self.runner.run(
                ["commit", "-q", "--no-verify", "-m", "Initial commit from template"],
                cwd=scaffold,
                env=env,
            )
            await self.runner.run(["symbolic-ref", "HEAD", f"refs/heads/{branch}"], env=env)


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() for p in path.rglob("*") if ".git" not in p.parts)
