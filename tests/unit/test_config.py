from pathlib import Path

from rdev.config import Settings


def test_config_file_gives_settings_and_env_wins(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'database_url = "postgresql+psycopg://db/x"\n'
        'default_agent = "opencode"\n'
        'webhook_allowlist = "127.0.0.1/32,hooks.internal"\n'
        "lease_seconds = 12\n"
    )
    for key in ("RDEV_DATABASE_URL", "RDEV_DEFAULT_AGENT", "RDEV_LEASE_SECONDS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RDEV_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("RDEV_DEFAULT_AGENT", "claude-code")
    s = Settings()
    assert s.resolved_database_url == "postgresql+psycopg://db/x"
    assert s.lease_seconds == 12
    assert s.webhook_allowlist == ["127.0.0.1/32", "hooks.internal"]
    assert s.default_agent == "claude-code"  # the environment wins over the file


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RDEV_DATABASE_URL", raising=False)
    monkeypatch.delenv("RDEV_CONFIG_FILE", raising=False)
    monkeypatch.setenv("RDEV_DATA_DIR", str(tmp_path / "d"))
    s = Settings()
    assert s.resolved_database_url == f"sqlite+aiosqlite:///{(tmp_path / 'd').resolve()}/rdev.db"
