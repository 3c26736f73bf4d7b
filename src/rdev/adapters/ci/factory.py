"""Build the CIProvider a project's CI settings ask for (the wiring module calls this)."""

from __future__ import annotations

import httpx

from rdev.adapters.ci.woodpecker import WoodpeckerCI
from rdev.domain.errors import ValidationFailed
from rdev.ports.ci import CIProvider, CISettings

SUPPORTED_CI_PROVIDERS = ("woodpecker",)


def build_ci_provider(
    settings: CISettings,
    *,
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> CIProvider:
    """``settings.provider`` picks the adapter; an unknown one is a ValidationFailed."""
    provider = (settings.provider or "").strip().lower()
    if provider == "woodpecker":
        return WoodpeckerCI(
            settings.server_url, settings.repo, settings.token, timeout=timeout, client=client
        )
    raise ValidationFailed(
        f"unknown CI provider {settings.provider!r}; supported: "
        + ", ".join(SUPPORTED_CI_PROVIDERS),
        field="provider",
    )
