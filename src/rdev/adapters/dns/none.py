"""DNSProvider for installations without a DNS server (``RDEV_DNS_PROVIDER=none``).

Aliases are still validated and kept by rdev; nothing is placed remotely, so the operator
points them by hand (or uses a wildcard record for the apps domain).
"""

from __future__ import annotations


class NoDNS:
    """Records nothing remotely: add and remove do nothing, lookups find nothing."""

    name = "none"

    async def add_cname(self, alias: str, target: str) -> None:
        return None

    async def remove_cname(self, alias: str, target: str | None = None) -> None:
        return None

    async def lookup_cname(self, alias: str) -> str | None:
        return None
