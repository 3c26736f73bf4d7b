"""The one secret scrubber: removes known secret values from any text before it leaves."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "***"
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class SecretScrubber:
    """Replaces every known secret (and its common encodings) with ``***``.

    Secrets shorter than 4 characters are ignored: scrubbing them would mangle ordinary text.
    Userinfo in URLs (``https://user:pw@host``) is always removed.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._needles: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 4:
            return
        self._needles.add(secret)
        self._needles.add(quote(secret, safe=""))
        for variant in (secret, f"x-access-token:{secret}", f"oauth2:{secret}", f":{secret}"):
            self._needles.add(base64.b64encode(variant.encode()).decode().rstrip("="))

    def scrub(self, text: str | None) -> str:
        if not text:
            return text or ""
        for needle in sorted(self._needles, key=len, reverse=True):
            if needle in text:
                text = text.replace(needle, REDACTED)
        return _URL_USERINFO.sub(r"\g<scheme>" + REDACTED + "@", text)
