"""Where the client finds its server and token: flags, then RDEV_SERVER / RDEV_TOKEN, then
the file ``rdev login`` writes (``$RDEV_CLIENT_CONFIG``, else
``$XDG_CONFIG_HOME/rdev/client.toml``, else ``~/.config/rdev/client.toml``; mode 600)."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class ClientError(Exception):
    """A one-line error for the terminal, and the process exit code to leave with."""

    def __init__(self, message: str, exit_code: int = 2, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.status = status  # the HTTP status, when the server answered


@dataclass(frozen=True)
class Connection:
    server: str
    token: str


def config_path() -> Path:
    explicit = os.environ.get("RDEV_CLIENT_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "rdev" / "client.toml"


def load_file(path: Path | None = None) -> dict[str, str]:
    path = path or config_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ClientError(f"cannot read {path}: {exc}") from None
    return {k: str(v) for k, v in data.items() if k in ("server", "token")}


def save_file(server: str, token: str, path: Path | None = None) -> Path:
    """Write the file with mode 600 from the start (never world-readable, not even briefly)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # JSON string escapes are valid TOML basic-string escapes.
    body = f"server = {json.dumps(server)}\ntoken = {json.dumps(token)}\n"
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, body.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


def normalise_server(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ClientError(f"server must be an http:// or https:// URL, not {url!r}")
    return url


def resolve(server: str | None, token: str | None) -> Connection:
    """Flags and environment (Typer fills both into the arguments) win over the file."""
    saved = load_file() if not (server and token) else {}
    server = server or saved.get("server")
    token = token or saved.get("token")
    if not server:
        raise ClientError("no server configured: run `rdev login` or pass --server / RDEV_SERVER")
    if not token:
        raise ClientError("no token configured: run `rdev login` or pass --token / RDEV_TOKEN")
    return Connection(normalise_server(server), token.strip())
