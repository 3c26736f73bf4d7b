"""The CIProvider port: read pipelines of a project's repository.

Also what a service needs to get one: :class:`ProjectCI` (a project's CI settings, the token
kept secret until a provider is built) and :class:`CIProviderFactory` (the adapter factory
bootstrap passes in, so services never import an adapter).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import SecretStr

#: Normalized pipeline/step states (the raw provider value is kept beside them).
CI_STATES = ("pending", "running", "success", "failure", "cancelled", "error", "blocked", "skipped")


@dataclass
class CIStep:
    name: str
    state: str
    raw_state: str
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None


@dataclass
class CIWorkflow:
    name: str
    state: str
    raw_state: str
    steps: list[CIStep] = field(default_factory=list)


@dataclass
class Pipeline:
    number: int
    status: str
    raw_status: str
    event: str | None
    branch: str | None
    ref: str | None
    commit_sha: str | None
    message: str | None
    author: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    url: str | None
    workflows: list[CIWorkflow] = field(default_factory=list)


@dataclass
class CISettings:
    provider: str
    server_url: str
    repo: str
    token: str = field(repr=False)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectCI:
    """A project's configured CI: ``settings["ci"]`` plus the write-only ``ci_token``."""

    provider: str
    server_url: str
    repo: str
    token: SecretStr | None = None

    @classmethod
    def of(
        cls, settings: Mapping[str, Any] | None, token: SecretStr | str | None
    ) -> ProjectCI | None:
        """From a project's settings and token; None when the project has no CI."""
        ci = (settings or {}).get("ci") or {}
        provider = ci.get("provider") or "none"
        if provider == "none":
            return None
        secret = token if isinstance(token, SecretStr) or token is None else SecretStr(token)
        return cls(provider, ci.get("server_url") or "", ci.get("repo") or "", secret)

    def provider_settings(self) -> CISettings:
        """The adapter's input: the one place the token is revealed."""
        token = self.token.get_secret_value() if self.token is not None else ""
        return CISettings(self.provider, self.server_url, self.repo, token)


class CIProvider(Protocol):
    #: The normalized server URL and repository (stored back by the CI settings check).
    server_url: str
    repo_full_name: str

    async def list_pipelines(
        self,
        page: int = 1,
        per_page: int = 25,
        branch: str | None = None,
        event: str | None = None,
        status: str | None = None,
    ) -> list[Pipeline]: ...

    async def get_pipeline(self, number: int | str) -> Pipeline:
        """``number`` may be ``"latest"``."""
        ...

    async def find_pipeline_for_commit(self, sha: str) -> Pipeline | None: ...


class CIProviderFactory(Protocol):
    """Build the provider ``settings`` asks for; ValidationFailed (with ``field``) if the
    settings are unusable (unknown provider, bad URL, no token)."""

    def __call__(self, settings: CISettings, timeout: float, /) -> CIProvider: ...
