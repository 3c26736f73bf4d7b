"""GitSmartHTTPApp: an ASGI app serving bare repositories over git smart HTTP.

Mount it anywhere (``app.mount("/git", GitSmartHTTPApp(root, authorize))``); clients then
clone ``<public url>/git/<name>.git``. Each request runs ``git http-backend`` as a CGI
process: the request body streams to its stdin, its output streams back. Only the smart
protocol is served (``info/refs?service=``, ``git-upload-pack``, ``git-receive-pack``).

Authentication is the caller's: ``authorize(token, repo_name, is_write)`` gets the token from
``Authorization: Basic`` (the password, or the user name when the password is empty) or
``Bearer``, and answers

* ``True``: go ahead;
* ``None``: no or unknown token -> 401 with ``WWW-Authenticate: Basic realm="rdev"``;
* ``False``: a known token without the right -> 403 (401 if no token was sent at all).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

Authorize = Callable[[str | None, str, bool], Awaitable[bool | None]]
# The ASGI shapes, as Starlette's ``mount`` takes them (no Starlette import needed here).
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_SERVICES = ("git-upload-pack", "git-receive-pack")
_GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9=:._-]{1,100}$")
_CHUNK = 64 * 1024


class InvalidRepoName(ValueError):
    """A repository name that could escape the repository root or is not a plain name."""


def validate_repo_name(name: str) -> str:
    """Return ``name`` if it is a plain repository name (no slashes, dots-only or ``.git``)."""
    if not _REPO_NAME.match(name) or ".." in name or name.endswith(".git"):
        raise InvalidRepoName(f"invalid repository name: {name!r}")
    return name


def token_from_authorization(header: str | None) -> str | None:
    """The token in a Basic (password, else user name) or Bearer ``Authorization`` header."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, _, password = decoded.partition(":")
        return password or user or None
    return None


class GitSmartHTTPApp:
    """Serves ``<root>/<name>.git`` bare repositories over git smart HTTP (ASGI)."""

    def __init__(self, root: Path, authorize: Authorize, *, git_bin: str = "git") -> None:
        self.root = Path(root)
        self.authorize = authorize
        self.git_bin = git_bin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = _route(scope)
        if route is None:
            await _plain(send, 404, "not found")
            return
        name, rest, service = route
        method = scope["method"]
        if (rest == "info/refs" and method not in ("GET", "HEAD")) or (
            rest != "info/refs" and method != "POST"
        ):
            await _plain(send, 405, "method not allowed")
            return

        headers = _headers(scope)
        token = token_from_authorization(headers.get("authorization"))
        is_write = service == "git-receive-pack"
        allowed = await self.authorize(token, name, is_write)
        if not allowed:
            if token is None or allowed is None:
                await _plain(
                    send, 401, "authentication required",
                    [(b"www-authenticate", b'Basic realm="rdev"')],
                )  # fmt: skip
            else:
                await _plain(send, 403, "forbidden")
            return
        if not (self.root / f"{name}.git").is_dir():
            await _plain(send, 404, "repository not found")
            return
        await self._run_backend(scope, receive, send, name, rest, headers)

    async def _run_backend(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str,
        rest: str,
        headers: dict[str, str],
    ) -> None:
        env = self._cgi_env(scope, name, rest, headers)
        proc = await asyncio.create_subprocess_exec(
            self.git_bin,
            "http-backend",
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin and proc.stdout and proc.stderr
        feeder = asyncio.create_task(_feed(receive, proc.stdin))
        errors = asyncio.create_task(proc.stderr.read())
        started = False
        try:
            status, out_headers, first = await _read_cgi_head(proc.stdout)
            await send({"type": "http.response.start", "status": status, "headers": out_headers})
            started = True
            if first:
                await send({"type": "http.response.body", "body": first, "more_body": True})
            while chunk := await proc.stdout.read(_CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            await proc.wait()
        except _BadCGI:
            if not started:
                await _plain(send, 502, "git backend failed")
        finally:
            feeder.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            stderr = (await errors).decode(errors="replace").strip()
            if stderr:
                logger.warning("git http-backend %s/%s: %s", name, rest, stderr[-1000:])

    def _cgi_env(
        self, scope: Scope, name: str, rest: str, headers: dict[str, str]
    ) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            # We authenticated the request ourselves: let http-backend serve pushes, and
            # serve repositories owned by another uid (a volume mounted into a container).
            "GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "http.receivepack",
            "GIT_CONFIG_VALUE_0": "true",
            "GIT_CONFIG_KEY_1": "safe.directory",
            "GIT_CONFIG_VALUE_1": "*",
            "GIT_PROJECT_ROOT": str(self.root.resolve()),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REQUEST_METHOD": scope["method"],
            "PATH_INFO": f"/{name}.git/{rest}",
            "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
            "REMOTE_USER": "rdev",
            "REMOTE_ADDR": (scope.get("client") or ("", 0))[0] or "",
        }
        if "content-type" in headers:
            env["CONTENT_TYPE"] = headers["content-type"]
        if "content-length" in headers:
            env["CONTENT_LENGTH"] = headers["content-length"]
        if "content-encoding" in headers:
            env["HTTP_CONTENT_ENCODING"] = headers["content-encoding"]
        protocol = headers.get("git-protocol", "")
        if _GIT_PROTOCOL.match(protocol):
            env["GIT_PROTOCOL"] = protocol
        return env


class _BadCGI(Exception):
    pass


def _route(scope: Scope) -> tuple[str, str, str | None] | None:
    """(repo name, rest of path, service) for a smart-HTTP request path, else None."""
    path: str = scope.get("path", "")
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    parts = path.strip("/").split("/")
    if len(parts) < 2 or not parts[0].endswith(".git"):
        return None
    try:
        name = validate_repo_name(parts[0][: -len(".git")])
    except InvalidRepoName:
        return None
    rest = "/".join(parts[1:])
    if rest == "info/refs":
        query = scope.get("query_string", b"").decode("latin-1")
        service = dict(p.partition("=")[::2] for p in query.split("&") if p).get("service")
        return (name, rest, service) if service in _SERVICES else None
    if rest in _SERVICES:
        return name, rest, rest
    return None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _feed(receive: Receive, stdin: asyncio.StreamWriter) -> None:
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body = message.get("body", b"")
            if body:
                stdin.write(body)
                await stdin.drain()
            if not message.get("more_body", False):
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        with contextlib.suppress(Exception):
            stdin.close()


async def _read_cgi_head(
    stdout: asyncio.StreamReader,
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Parse CGI response headers; return (status, headers, first body bytes)."""
    buffer = b""
    while True:
        for sep in (b"\r\n\r\n", b"\n\n"):
            idx = buffer.find(sep)
            if idx >= 0:
                return (*_parse_cgi_headers(buffer[:idx]), buffer[idx + len(sep) :])
        chunk = await stdout.read(_CHUNK)
        if not chunk:
            raise _BadCGI("git http-backend ended before its headers")
        buffer += chunk
        if len(buffer) > 64 * 1024:
            raise _BadCGI("git http-backend headers too long")


def _parse_cgi_headers(raw: bytes) -> tuple[int, list[tuple[bytes, bytes]]]:
    status = 200
    headers: list[tuple[bytes, bytes]] = []
    for line in raw.replace(b"\r\n", b"\n").split(b"\n"):
        key, _, value = line.partition(b":")
        key, value = key.strip(), value.strip()
        if not key:
            continue
        if key.lower() == b"status":
            status = int(value.split(b" ", 1)[0])
        else:
            headers.append((key.lower(), value))
    return status, headers


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = (text + "\n").encode()
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
