"""The DNSProvider port: place and remove CNAME aliases."""

from __future__ import annotations

from typing import Protocol


class DNSError(Exception):
    """The DNS server failed or refused (message carries no secret)."""


class DNSConflict(DNSError):
    """Other records exist at that name; a CNAME cannot be placed there."""


class DNSProvider(Protocol):
    name: str

    async def add_cname(self, alias: str, target: str) -> None: ...

    async def remove_cname(self, alias: str, target: str | None = None) -> None: ...

    async def lookup_cname(self, alias: str) -> str | None:
        """The CNAME target as served now (absolute, trailing dot), or None."""
        ...
