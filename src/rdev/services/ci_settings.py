"""A project's CI settings: validating the ``ci`` object of ``PATCH /projects/{id}`` and the
public view of them.

The settings (provider, server URL, repo, whether a token is set) live in
``projects.settings["ci"]``; the token only in ``projects.ci_token``, never shown. A patch is
validated by building the provider from it with the injected factory, so whatever the
adapter refuses (a bad URL, no token, an unknown provider) is a 422 on the right field, and
what it normalizes (a trailing ``/api``, a padded repo name) is what gets stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rdev.domain.errors import ValidationFailed
from rdev.domain.secrets import SecretScrubber
from rdev.ports.ci import CIProviderFactory, CISettings
from rdev.ports.projects import ProjectRecord, reveal

#: Provider names a project may choose (``none`` removes CI). A new adapter adds its name.
CI_PROVIDERS = ("woodpecker", "none")


def public_ci_settings(project_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The CI settings as the API shows them: never the token, only whether one is set."""
    ci = (project_settings or {}).get("ci") or {}
    provider = ci.get("provider") or "none"
    return {
        "provider": provider,
        "server_url": ci.get("server_url") if provider != "none" else None,
        "repo": ci.get("repo") if provider != "none" else None,
        "has_token": bool(ci.get("has_token")) if provider != "none" else False,
    }


class CISettingsService:
    """Checks a ``ci`` patch against the project's current CI (ProjectService calls it)."""

    def __init__(self, provider_factory: CIProviderFactory, *, http_timeout: float = 10.0):
        self.provider_factory = provider_factory
        self.http_timeout = http_timeout

    def prepare(
        self, project: ProjectRecord, patch: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Merge a ``ci`` patch with the project's current CI (its ``settings["ci"]`` and
        ``ci_token``) and validate it. Returns (``settings["ci"]`` or None, the token).

        With the same provider, omitted fields keep their value (the token is write-only, so a
        client changing the URL need not send it again); ``provider: none`` clears all of it.
        """
        provider = str(patch.get("provider") or "").strip().lower()
        if provider not in CI_PROVIDERS:
            raise ValidationFailed(
                "ci.provider must be one of " + ", ".join(CI_PROVIDERS), field="ci.provider"
            )
        if provider == "none":
            return None, None
        current = project.settings.get("ci") or {}
        same = current.get("provider") == provider
        merged = {
            key: patch[key] if patch.get(key) is not None else (current.get(key) if same else None)
            for key in ("server_url", "repo")
        }
        token: str | None = (
            patch["token"]
            if patch.get("token") is not None
            else (reveal(project.ci_token) if same else None)
        )
        try:
            built = self.provider_factory(
                CISettings(provider, merged["server_url"] or "", merged["repo"] or "", token or ""),
                self.http_timeout,
            )
        except ValidationFailed as exc:
            raise ValidationFailed(
                SecretScrubber([token]).scrub(exc.detail),
                field=f"ci.{exc.field}" if exc.field else "ci",
            ) from None
        # The adapter normalizes (trailing '/' or '/api' removed, repo stripped): store that.
        stored = {
            "provider": provider,
            "server_url": built.server_url,
            "repo": built.repo_full_name,
            "has_token": bool(token),
        }
        return stored, token
