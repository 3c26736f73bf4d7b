"""DNS adapters: pick the DNSProvider the settings ask for.

``none``: :class:`NoDNS` (nothing remote). ``rfc2136``: :class:`Rfc2136DNS`, dynamic
updates with TSIG to ``RDEV_DNS_SERVER:RDEV_DNS_PORT`` for ``RDEV_DNS_ZONES`` (or the apps
domain when no zones are set).
"""

from __future__ import annotations

from rdev.adapters.dns.none import NoDNS
from rdev.adapters.dns.rfc2136 import Rfc2136DNS
from rdev.config import Settings
from rdev.domain.hostnames import effective_zones
from rdev.ports.dns import DNSProvider

__all__ = ["NoDNS", "Rfc2136DNS", "build_dns_provider"]


def build_dns_provider(settings: Settings) -> DNSProvider:
    """The configured provider; a ValueError (no secret in it) names a bad setting."""
    kind = settings.dns_provider.strip().lower()
    if kind in ("", "none"):
        return NoDNS()
    if kind == "rfc2136":
        return Rfc2136DNS(
            server=settings.dns_server,
            port=settings.dns_port,
            zones=effective_zones(settings.dns_zones, settings.apps_domain),
            tsig_name=settings.dns_tsig_name,
            tsig_algorithm=settings.dns_tsig_algorithm,
            tsig_secret=settings.dns_tsig_secret,
        )
    raise ValueError(f"unknown RDEV_DNS_PROVIDER {settings.dns_provider!r} (none | rfc2136)")
