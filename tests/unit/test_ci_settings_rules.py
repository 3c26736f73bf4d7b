"""The rules of a ``PATCH /projects/{id}`` ``ci`` object, with a recording provider factory.

Omitted fields keep their value under the same provider (the token is write-only), a new
provider starts from nothing, ``none`` clears it all, what the adapter normalizes is stored,
and the adapter's refusal is a 422 on ``ci.<field>`` that never shows the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from rdev.domain.errors import ValidationFailed
from rdev.ports.ci import CIProvider, CISettings, Pipeline
from rdev.ports.projects import ProjectRecord
from rdev.services.ci_settings import CISettingsService, public_ci_settings

TOKEN = "wp-old-token-555555"


@dataclass
class Normalizing:
    """A provider that strips the URL like the Woodpecker adapter does."""

    server_url: str
    repo_full_name: str

    async def list_pipelines(self, *args: object, **kwargs: object) -> list[Pipeline]:
        return []

    async def get_pipeline(self, number: int | str) -> Pipeline:
        raise AssertionError("not used")

    async def find_pipeline_for_commit(self, sha: str) -> Pipeline | None:
        return None


def factory(settings: CISettings, timeout: float) -> CIProvider:
    if not settings.token:
        raise ValidationFailed("CI token is required", field="token")
    if not settings.server_url.startswith("http"):
        raise ValidationFailed(
            f"bad URL {settings.server_url} for {settings.token}", field="server_url"
        )
    return Normalizing(settings.server_url.rstrip("/").removesuffix("/api"), settings.repo.strip())


def project(ci: dict[str, Any] | None = None, token: str | None = TOKEN) -> ProjectRecord:
    return ProjectRecord(
        id="p1",
        name="shop",
        repo_url="https://git.test/acme/shop.git",
        default_branch="main",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        settings={"ci": ci} if ci else {},
        ci_token=SecretStr(token) if token else None,
    )


WOODPECKER = {
    "provider": "woodpecker",
    "server_url": "https://ci.test",
    "repo": "acme/shop",
    "has_token": True,
}
service = CISettingsService(factory)


def test_a_new_ci_is_validated_normalized_and_the_token_kept_apart() -> None:
    stored, token = service.prepare(
        project(token=None),
        {
            "provider": "Woodpecker ",
            "server_url": "https://ci.test/api/",
            "repo": " acme/shop ",
            "token": "t-123456",
        },
    )
    assert stored == WOODPECKER
    assert token == "t-123456"


def test_omitted_fields_keep_their_value_under_the_same_provider() -> None:
    stored, token = service.prepare(
        project(WOODPECKER), {"provider": "woodpecker", "server_url": "https://ci2.test"}
    )
    assert stored == {**WOODPECKER, "server_url": "https://ci2.test"}
    assert token == TOKEN  # write-only: not sent again, still there


def test_a_different_provider_starts_from_nothing() -> None:
    other = {**WOODPECKER, "provider": "gitlab"}
    with pytest.raises(ValidationFailed) as err:
        service.prepare(project(other), {"provider": "woodpecker", "server_url": "https://ci.test"})
    assert err.value.field == "ci.token"


def test_provider_none_clears_everything_and_an_unknown_one_is_refused() -> None:
    assert service.prepare(project(WOODPECKER), {"provider": "none"}) == (None, None)
    with pytest.raises(ValidationFailed) as err:
        service.prepare(project(), {"provider": "jenkins"})
    assert err.value.field == "ci.provider"


def test_the_adapters_refusal_names_the_ci_field_and_never_the_token() -> None:
    with pytest.raises(ValidationFailed) as err:
        service.prepare(project(WOODPECKER), {"provider": "woodpecker", "server_url": "ftp://x"})
    assert err.value.field == "ci.server_url"
    assert TOKEN not in err.value.detail and "***" in err.value.detail


def test_the_public_view_shows_whether_a_token_is_set_never_the_token() -> None:
    assert public_ci_settings({"ci": WOODPECKER}) == {
        "provider": "woodpecker",
        "server_url": "https://ci.test",
        "repo": "acme/shop",
        "has_token": True,
    }
    none = {"provider": "none", "server_url": None, "repo": None, "has_token": False}
    assert public_ci_settings({}) == none
    assert public_ci_settings(None) == none
