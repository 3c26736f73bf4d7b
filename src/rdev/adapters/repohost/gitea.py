"""GiteaRepoHost: the RepoHost port over the Gitea / Forgejo REST API (/api/v1).

Create (``options`` keys, all optional):

- ``owner``: org or user that owns the repository. Absent, or equal to the ``username`` the
  host was built with: ``POST /user/repos`` (the token's own user). Otherwise
  ``POST /orgs/{owner}/repos``.
- ``template_repo``: ``"owner/name"`` of a Gitea *template repository*: the repository is
  generated from it (``POST /repos/{o}/{n}/generate``, git content copied). ``owner`` (or
  ``username``) is then required: Gitea's GenerateRepoOption needs it.
- ``private`` (bool), ``description`` (str), ``auto_init`` (bool; default: only when there
  is no scaffold to push, so the repository always has ``default_branch`` to clone).

When a ``scaffold`` folder is given its files are pushed as a commit on ``default_branch``
(:func:`push_scaffold`); if that push fails the new repository is deleted again.

Errors: 409 -> Conflict, 400/422 -> ValidationFailed, 401/403 -> UpstreamFailed("Gitea token
rejected ..."), timeouts -> UpstreamTimeout, anything else -> UpstreamFailed. Messages never
contain the token (SecretScrubber), and redirects are not followed (the token would go along).
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from rdev.adapters.git.runner import GitRunner
from rdev.adapters.repohost.scaffold_push import push_scaffold
from rdev.domain.errors import (
    Conflict,
    DomainError,
    UpstreamFailed,
    UpstreamTimeout,
    ValidationFailed,
)
from rdev.domain.secrets import SecretScrubber
from rdev.ports.git import GitError
from rdev.ports.repohost import CreatedRepo

log = logging.getLogger(__name__)

# Gitea's AlphaDashDot binding for names; checked here too so nothing odd lands in a URL path.
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class GiteaRepoHost:
    """RepoHost for a Gitea or Forgejo server.

    ``base_url`` is the server root (``https://git.example.com``), ``token`` an API token with
    ``write:repository`` (+ ``write:user`` for user repos, ``write:organization`` for org
    repos). ``username`` (the token's login) lets ``options.owner == username`` create a user
    repository and lets :meth:`delete` work without ``options.owner``.
    """

    name = "gitea"

    def __init__(
        self,
        base_url: str,
        token: str,
        timeout: float = 10.0,
        *,
        username: str | None = None,
        git_runner: GitRunner | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_url = f"{self.base_url}/api/v1"
        self._token = token
        self.timeout = timeout
        self.username = username
        self._git_runner = git_runner
        self._scrubber = SecretScrubber([token])

    def __repr__(self) -> str:  # never show the token
        return f"GiteaRepoHost(base_url={self.base_url!r}, username={self.username!r})"

    # -- RepoHost ----------------------------------------------------------------------------

    async def create(
        self, name: str, default_branch: str, options: dict[str, Any], scaffold: Path | None
    ) -> CreatedRepo:
        _check_name(name, "name")
        owner = options.get("owner") or None
        if owner is not None:
            _check_name(owner, "options.owner")
        template_repo = options.get("template_repo")
        has_scaffold = scaffold is not None and _has_files(Path(scaffold))

        if template_repo:
            path, body = self._generate_request(name, default_branch, options, owner)
        else:
            body = {
                "name": name,
                "default_branch": default_branch,
                "private": bool(options.get("private", False)),
                "auto_init": bool(options.get("auto_init", not has_scaffold)),
            }
            if owner is None or owner == self.username:
                path = "/user/repos"
            else:
                path = f"/orgs/{quote(owner, safe='')}/repos"
        if options.get("description"):
            body["description"] = str(options["description"])

        repo = await self._request("POST", path, body, what=f"creating repository {name!r}")
        created = CreatedRepo(
            clone_url=str(repo.get("clone_url") or ""),
            web_url=repo.get("html_url"),
            credential=SecretStr(self._token),
        )
        if not created.clone_url.startswith(("http://", "https://")):
            raise UpstreamFailed(f"Gitea returned no usable clone_url for {name!r}")
        if has_scaffold:
            assert scaffold is not None
            await self._push_or_roll_back(repo, created.clone_url, Path(scaffold), default_branch)
        return created

    def clone_url(self, name: str) -> str | None:
        """Unknown before the repository exists: Gitea answers it (its ROOT_URL and the
        owner, which may be the token's own user, decide it)."""
        return None

    async def delete(self, name: str, options: dict[str, Any]) -> None:
        """Delete ``owner/name``; a repository that is already gone is not an error."""
        _check_name(name, "name")
        owner = options.get("owner") or self.username
        if not owner:
            raise ValidationFailed(
                "options.owner is required to delete a Gitea repository "
                "(or configure the host's username)",
                field="options.owner",
            )
        _check_name(owner, "options.owner")
        await self._request(
            "DELETE",
            f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}",
            None,
            what=f"deleting repository {owner}/{name}",
            missing_ok=True,
        )

    # -- internals ---------------------------------------------------------------------------

    def _generate_request(
        self, name: str, default_branch: str, options: dict[str, Any], owner: str | None
    ) -> tuple[str, dict[str, Any]]:
        template_repo = str(options["template_repo"])
        t_owner, _, t_name = template_repo.partition("/")
        if not t_owner or not t_name or not _NAME.match(t_owner) or not _NAME.match(t_name):
            raise ValidationFailed(
                f"options.template_repo must be 'owner/name', got {template_repo!r}",
                field="options.template_repo",
            )
        owner = owner or self.username
        if not owner:
            raise ValidationFailed(
                "options.owner is required to generate a repository from a template",
                field="options.owner",
            )
        body: dict[str, Any] = {
            "owner": owner,
            "name": name,
            "default_branch": default_branch,
            "private": bool(options.get("private", False)),
            # Gitea answers 422 unless at least one item is copied; git content is the point.
            "git_content": True,
        }
        path = f"/repos/{quote(t_owner, safe='')}/{quote(t_name, safe='')}/generate"
        return path, body

    async def _push_or_roll_back(
        self, repo: dict[str, Any], clone_url: str, scaffold: Path, default_branch: str
    ) -> None:
        try:
            await push_scaffold(
                clone_url, self._token, scaffold, default_branch, runner=self._git_runner
            )
        except (GitError, OSError) as exc:
            full_name = str(repo.get("full_name") or "")
            owner, _, name = full_name.partition("/")
            if owner and name:
                with contextlib.suppress(DomainError):
                    await self.delete(name, {"owner": owner})
            detail = self._scrubber.scrub(str(exc))
            raise UpstreamFailed(
                f"pushing the scaffold to the new Gitea repository failed "
                f"(repository removed again): {detail}"
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        what: str,
        missing_ok: bool = False,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"token {self._token}", "Accept": "application/json"}
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout, follow_redirects=False, trust_env=False
            ) as client:
                resp = await client.request(
                    method, f"{self.api_url}{path}", json=body, headers=headers
                )
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"Gitea did not answer in {self.timeout:g}s while {what}"
            ) from None
        except httpx.HTTPError as exc:
            raise UpstreamFailed(
                f"Gitea unreachable while {what}: {self._scrubber.scrub(type(exc).__name__)}"
            ) from None

        if resp.status_code in (200, 201):
            try:
                data = resp.json()
            except ValueError:
                raise UpstreamFailed(f"Gitea sent a non-JSON response while {what}") from None
            if not isinstance(data, dict):
                raise UpstreamFailed(f"Gitea sent an unexpected response while {what}")
            return data
        if resp.status_code == 204 or (missing_ok and resp.status_code == 404):
            return {}
        raise self._error(resp, what)

    def _error(self, resp: httpx.Response, what: str) -> DomainError:
        status = resp.status_code
        message = self._scrubber.scrub(_message(resp))[:500]
        suffix = f": {message}" if message else ""
        if status == 409:
            return Conflict(f"{what}: the name is already taken on Gitea{suffix}", field="name")
        if status in (400, 422):
            return ValidationFailed(f"{what}: Gitea refused the request{suffix}")
        if status in (401, 403):
            return UpstreamFailed(
                f"Gitea token rejected while {what} (HTTP {status}){suffix}",
                extra={"upstream_status": status},
            )
        if status == 404:
            return UpstreamFailed(
                f"{what}: not found on Gitea (HTTP 404; unknown owner or template "
                f"repository, or not visible to the token){suffix}",
                extra={"upstream_status": status},
            )
        return UpstreamFailed(
            f"{what}: Gitea answered HTTP {status}{suffix}", extra={"upstream_status": status}
        )


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        for key in ("message", "error"):
            value = data.get(key)
            if isinstance(value, str):
                return value
    return ""


def _check_name(value: Any, field: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value) or value in (".", ".."):
        raise ValidationFailed(
            f"{field} must be 1-100 letters, digits, '-', '_' or '.', got {value!r}", field=field
        )


def _has_files(path: Path) -> bool:
    return path.is_dir() and any(p.is_file() for p in path.rglob("*") if ".git" not in p.parts)
