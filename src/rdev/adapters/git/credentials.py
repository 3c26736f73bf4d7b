"""How a credential reaches git: an ``http.<origin>.extraHeader`` in the environment only.

Choice: ``Authorization: Basic base64(x-access-token:TOKEN)``. Basic with a dummy user and the
token as password is what GitHub, GitLab (any user name), Gitea/Forgejo, Bitbucket app
passwords and our own git smart-HTTP server all accept; Bearer is refused by several of them.
A credential already of the form ``user:password`` is sent as ``Basic base64(user:password)``.

The header is scoped to the remote's ``scheme://host[:port]/`` so git never sends it to
another host (a redirect, a submodule, a URL rewritten by config the agent wrote). It travels
as ``GIT_CONFIG_KEY_n``/``GIT_CONFIG_VALUE_n``: never in a URL, never in ``.git/config``.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit, urlunsplit

from rdev.domain.secrets import SecretScrubber


def authorization_header(credential: str) -> str:
    """``Authorization: Basic ...`` for a bare token or a ``user:password`` pair."""
    userpass = credential if ":" in credential else f"x-access-token:{credential}"
    return "Authorization: Basic " + base64.b64encode(userpass.encode()).decode()


def split_userinfo(url: str) -> tuple[str, str | None]:
    """Remove ``user:password@`` from an http(s) URL; return (clean url, credential or None).

    A URL with a secret in it would end up in ``.git/config``; we move it to the header.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, userinfo or None


def credential_config(url: str, credential: str | None) -> list[tuple[str, str]]:
    """Config pairs that give git the credential for ``url`` (none for non-http URLs)."""
    if not credential:
        return []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return []  # ssh uses keys/agent; file:// needs nothing
    origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/"
    return [(f"http.{origin}.extraHeader", authorization_header(credential))]


def scrubber_for(credential: str | None) -> SecretScrubber:
    """A scrubber that knows the credential, its parts and the header we derive from it."""
    scrubber = SecretScrubber([credential])
    if credential:
        scrubber.add(authorization_header(credential).split(" ", 2)[2])
        if ":" in credential:
            scrubber.add(credential.split(":", 1)[1])
    return scrubber
