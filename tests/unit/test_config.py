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


SECRETS = {
    "admin_token": "rdev_admin_s3cret",
    "gitea_token": "gitea_s3cret",
    "dns_tsig_secret": "dHNpZy1zM2NyZXQ=",
    "database_url": "postgresql+psycopg://rdev:pw-s3cret@db/rdev",
}


def _plain(tmp_path: Path, monkeypatch, **values: object) -> Settings:
    monkeypatch.delenv("RDEV_CONFIG_FILE", raising=False)
    monkeypatch.setenv("RDEV_DATA_DIR", str(tmp_path))
    return Settings(**values)


def test_secret_settings_never_show_in_a_repr_or_a_dump(tmp_path: Path, monkeypatch):
    s = _plain(tmp_path, monkeypatch, **SECRETS)
    shown = repr(s) + str(s) + s.model_dump_json() + str(s.model_dump())
    for value in SECRETS.values():
        assert value not in shown
    assert s.admin_token is not None and s.admin_token.get_secret_value() == SECRETS["admin_token"]
    assert s.resolved_database_url == SECRETS["database_url"]  # revealed to connect with


def test_a_copy_with_a_plain_secret_keeps_it_wrapped(tmp_path: Path, monkeypatch):
    s = _plain(tmp_path, monkeypatch)
    copy = s.model_copy(update={"gitea_token": "gitea_s3cret", "dns_zones": "a.test, b.test"})
    assert "gitea_s3cret" not in repr(copy)
    assert copy.gitea_token is not None and copy.gitea_token.get_secret_value() == "gitea_s3cret"
    assert copy.dns_zones == ["a.test", "b.test"]  # validated like any other input
    assert s.gitea_token is None  # the original is untouched


def test_a_copy_with_another_database_resolves_that_database(tmp_path: Path, monkeypatch):
    s = _plain(tmp_path, monkeypatch)
    assert s.resolved_database_url.startswith("sqlite+aiosqlite:///")
    copy = s.model_copy(update={"database_url": "postgresql+psycopg://db/other"})
    assert copy.resolved_database_url == "postgresql+psycopg://db/other"
