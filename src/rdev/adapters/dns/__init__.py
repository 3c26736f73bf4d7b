"""DNS adapters: pick the DNSProvider the configuration asks for.

``none``: :class:`NoDNS` (nothing remote). ``rfc2136``: :class:`Rfc2136DNS`, dynamic
updates with TSIG to ``RDEV_DNS_SERVER:RDEV_DNS_PORT`` for ``RDEV_DNS_ZONES`` (or the apps
domain when no zones are set). The values come in plain (``bootstrap.dns_provider`` takes
them from the settings and reveals the TSIG secret only here).
"""

from __future__ import annotations

from rdev.adapters.dns.none import NoDNS
from rdev.adapters.dns.rfc2136 import Rfc2136DNS
from rdev.ports.dns import DNSProvider

__all__ = ["NoDNS", "Rfc2136DNS", "build_dns_provider"]


def build_dns_provider(
    kind: str,
    *,
    server: str,
    port: int,
    zones: list[str],
    tsig_name: str | None = None,
    tsig_algorithm: str = "hmac-sha256",
    tsig_secret: str | None = None,
) -> DNSProvider:
    """The provider ``kind`` names (``RDEV_DNS_PROVIDER``); a ValueError (no secret in it)
    names a bad setting. ``zones`` are the zones aliases may live under."""
    normalized = kind.strip().lower()
    if normalized in ("", "none"):
        return NoDNS()
    if normalized == "rfc2136":
        return Rfc2136DNS(
            server=server,
            port=port,
            zones=zones,
            tsig_name=tsig_name,
            tsig_algorithm=tsig_algorithm,
            tsig_secret=tsig_secret,
        )
    raise ValueError(f"unknown RDEV_DNS_PROVIDER {kind!r} (none | rfc2136)")
