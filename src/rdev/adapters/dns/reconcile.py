"""Compare the aliases rdev knows with what the DNS server serves, and optionally repair.

Used by ``rdev domains reconcile [--fix]``. Only names rdev knows are checked: CNAMEs added
to the zone by others ("extra" aliases) are not knowable without a zone transfer, which
rdev does not ask for.
"""

from __future__ import annotations

from rdev.ports.dns import DNSConflict, DNSError, DNSProvider, Drift, DriftKind

__all__ = ["Drift", "DriftKind", "reconcile"]


def _norm(name: str) -> str:
    return name.strip().rstrip(".").lower()


async def reconcile(expected: dict[str, str], dns: DNSProvider, fix: bool) -> list[Drift]:
    """Check each ``alias → canonical target``; with ``fix``, put missing or wrong ones back.

    Aliases are checked one after another, in sorted order, so the report is stable and the
    server sees one request at a time. A wrong CNAME is repaired by removing exactly that
    CNAME and adding the expected one.
    """
    drifts: list[Drift] = []
    for alias in sorted(expected):
        target = expected[alias]
        try:
            actual = await dns.lookup_cname(alias)
        except DNSError as exc:
            drifts.append(Drift(alias, target, None, "unreachable", error=str(exc)))
            continue
        if actual is not None and _norm(actual) == _norm(target):
            continue
        kind: DriftKind = "missing" if actual is None else "wrong"
        if not fix:
            drifts.append(Drift(alias, target, actual, kind))
            continue
        try:
            if actual is not None:
                await dns.remove_cname(alias, actual)
            await dns.add_cname(alias, target)
        except DNSConflict as exc:
            drifts.append(Drift(alias, target, actual, kind, error=f"conflict: {exc}"))
        except DNSError as exc:
            drifts.append(Drift(alias, target, actual, kind, error=str(exc)))
        else:
            drifts.append(Drift(alias, target, actual, kind, fixed=True))
    return drifts
