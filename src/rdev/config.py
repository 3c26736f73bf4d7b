"""Settings: one pydantic-settings object, from RDEV_* environment variables or a config file.

The config file (``RDEV_CONFIG_FILE``, default ``<data dir>/config.toml`` if present) holds the
same keys in lower case without the prefix, e.g. ``database_url = "postgresql+psycopg://..."``.
Environment variables win over the file.

Secret settings (the admin token, the Gitea token, the DNS TSIG secret, the database URL,
which may hold a password) are :class:`~pydantic.SecretStr`: a ``repr``, a log line or a
``model_dump`` shows ``**********``. ``bootstrap.py`` reveals each one where it hands it to
the adapter or service that uses it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CommaList = Annotated[list[str], NoDecode]


def _split(v: Any) -> list[str]:
    if v is None or v == "":
        return []
    if isinstance(v, str):
        return [p.strip() for p in v.split(",") if p.strip()]
    return list(v)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RDEV_", extra="ignore", validate_assignment=True)

    data_dir: Path = Path(".rdev")
    database_url: SecretStr | None = None
    admin_token: SecretStr | None = None
    default_agent: str = "command"
    embedded_worker: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = None
    log_level: str = "INFO"
    log_format: str = "json"

    # queue
    lease_seconds: float = 60.0
    max_attempts: int = 3
    reaper_interval_seconds: float = 5.0
    claim_wait_seconds: float = 30.0
    worker_offline_after_seconds: float = 45.0
    retry_delay_seconds: float = 30.0
    max_retryable_failures: int = 5

    # worker (also the embedded worker)
    command_agent: str | None = None
    claude_bin: str | None = None
    opencode_bin: str | None = None
    agent_env_allowlist: CommaList = Field(
        default_factory=lambda: [
            "ANTHROPIC_API_KEY",
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_AUTH_TOKEN",
            "OPENAI_API_KEY",
            "OPENAI_BASE_URL",
            "OPENCODE_PROVIDER_URL",
        ]
    )
    opencode_provider: str = "openai"
    opencode_model: str | None = None
    #: USD per 1M tokens; without them OpenCode reports no cost (cost_usd stays null).
    opencode_cost_per_mtok_input: float | None = None
    opencode_cost_per_mtok_output: float | None = None
    worker_slots: int = 2
    worker_workdir: Path | None = None
    keep_failed_workdirs: bool = False
    #: ssh command line git uses for ssh:// remotes (keep BatchMode=yes: never prompt).
    git_ssh_command: str | None = None
    git_author_name: str = "rdev"
    git_author_email: str = "rdev@localhost"
    default_timeout_seconds: int = 1800
    shutdown_grace_seconds: float = 30.0

    # webhooks
    webhook_allowlist: CommaList = Field(default_factory=list)
    webhook_max_attempts: int = 12
    webhook_timeout_seconds: float = 10.0

    # templates / repo hosts
    templates_dir: Path | None = None
    repo_host: str = "local"
    gitea_url: str | None = None
    gitea_token: SecretStr | None = None

    # CI
    ci_link_timeout_seconds: float = 600.0
    ci_poll_interval_seconds: float = 5.0

    # DNS
    apps_domain: str = "apps.localhost"
    dns_provider: str = "none"
    dns_server: str = "127.0.0.1"
    dns_port: int = 53
    dns_zones: CommaList = Field(default_factory=list)
    dns_tsig_name: str | None = None
    dns_tsig_algorithm: str = "hmac-sha256"
    dns_tsig_secret: SecretStr | None = None
    dns_max_aliases_per_project: int = 20

    @field_validator("webhook_allowlist", "dns_zones", "agent_env_allowlist", mode="before")
    @classmethod
    def _comma_list(cls, v: Any) -> list[str]:
        return _split(v)

    @cached_property
    def resolved_database_url(self) -> str:
        """The database URL to connect with (revealed: it may carry a password), by default
        a SQLite file in the data dir."""
        if self.database_url and self.database_url.get_secret_value():
            return self.database_url.get_secret_value()
        return f"sqlite+aiosqlite:///{(self.data_dir / 'rdev.db').resolve()}"

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy with ``update`` validated like any other input (a plain string for a
        secret setting becomes a SecretStr, as it does from the environment); pydantic's own
        ``model_copy`` would store the values unchecked."""
        copy = super().model_copy(deep=deep)
        copy.__dict__.pop("resolved_database_url", None)  # recomputed from the copy's fields
        for name, value in (update or {}).items():
            setattr(copy, name, value)  # validate_assignment: checked and converted
        return copy

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then ``RDEV_*`` variables, then the TOML file (no .env)."""
        return (init_settings, env_settings, _TomlFile(settings_cls))


class _TomlFile(PydanticBaseSettingsSource):
    """``RDEV_CONFIG_FILE``, else ``<RDEV_DATA_DIR>/config.toml`` when it exists."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads the whole file at once

    def __call__(self) -> dict[str, Any]:
        path = os.environ.get("RDEV_CONFIG_FILE")
        if not path:
            data_dir = Path(os.environ.get("RDEV_DATA_DIR", ".rdev"))
            candidate = data_dir / "config.toml"
            if not candidate.exists():
                return {}
            path = str(candidate)
        with open(path, "rb") as fh:
            return tomllib.load(fh)


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
