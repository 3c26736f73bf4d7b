"""Hostnames for project aliases: validate and normalize what a user asks for, pure (no I/O).

An alias is a DNS name under one of the operator's allowed zones that rdev points, by a
CNAME, at the project's canonical hostname ``{project}.{apps_domain}``. Names are stored as
lowercase A-labels (``xn--bcher-kva.apps.test``) without a trailing dot; the Unicode form is
kept for display.

Rules (each failure raises :class:`ValidationFailed` with ``field="domain"`` and a detail
naming the rule): RFC 1123 letters/digits/hyphens, no hyphen at a label's start or end,
labels of 1–63 octets, a name of at most 253 octets, valid IDNA for non-ASCII labels, no
wildcard, strictly below an allowed zone (the apex cannot hold a CNAME beside its SOA and
NS records), and never a canonical hostname.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rdev.domain.errors import ValidationFailed

try:  # the IDNA 2008 + UTS #46 implementation (a dependency of httpx)
    import idna as _idna
except ImportError:  # pragma: no cover - the stdlib codec (IDNA 2003) is the fallback
    _idna = None  # type: ignore[assignment]

MAX_LABEL = 63
MAX_NAME = 253
_LDH = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Dots that UTS #46 treats as label separators (ideographic, fullwidth, halfwidth).
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
FIELD = "domain"


@dataclass(frozen=True)
class Alias:
    """A validated alias: ``ascii`` goes to DNS and the database, ``unicode`` is for people."""

    ascii: str
    unicode: str
    zone: str  # the (most specific) allowed zone the alias lies under, as an A-label

    @property
    def fqdn(self) -> str:
        """The absolute name, with the trailing dot DNS wants."""
        return self.ascii + "."


class AliasState(StrEnum):
    """Where an alias is in its life: ``pending`` (reserved, its CNAME being placed),
    ``active`` (served), ``deleting`` (its CNAME being removed)."""

    PENDING = "pending"
    ACTIVE = "active"
    DELETING = "deleting"


@dataclass(frozen=True)
class AliasRecord:
    """One stored alias of a project: ``domain`` is the A-label (DNS, the unique key),
    ``unicode`` the form for people, ``target`` the canonical hostname its CNAME points at.
    ``project_name`` comes along so that a taken name can say whose it is."""

    id: int
    project_id: str
    project_name: str
    domain: str
    unicode: str
    target: str
    state: AliasState
    created_at: datetime


def _fail(detail: str) -> ValidationFailed:
    return ValidationFailed(detail, field=FIELD)


def _to_alabel(label: str) -> str:
    if _idna is not None:
        try:
            return _idna.encode(label, uts46=True).decode("ascii")
        except (_idna.IDNAError, UnicodeError) as exc:
            raise _fail(f"label {label!r} is not valid IDNA ({exc})") from None
    try:
        return label.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise _fail(f"label {label!r} is not valid IDNA ({exc})") from None


def _to_ulabel(alabel: str) -> str:
    if not alabel.startswith("xn--"):
        return alabel
    if _idna is not None:
        try:
            return _idna.decode(alabel)
        except (_idna.IDNAError, UnicodeError) as exc:
            raise _fail(f"label {alabel!r} is not valid IDNA ({exc})") from None
    try:
        return alabel.encode("ascii").decode("idna")
    except UnicodeError as exc:
        raise _fail(f"label {alabel!r} is not valid IDNA ({exc})") from None


def _normalize_label(label: str, name: str) -> tuple[str, str]:
    """One label → (A-label, U-label), checking the syntax rules in a helpful order."""
    if not label:
        raise _fail(f"{name!r} has an empty label (consecutive dots or a leading dot)")
    if label.startswith("-") or label.endswith("-"):
        raise _fail(f"label {label!r} must not start or end with a hyphen (RFC 1123)")
    if label.isascii():
        alabel = label.lower()
        if not _LDH.match(alabel):
            raise _fail(f"label {label!r} may hold only letters, digits and hyphens (RFC 1123)")
    else:
        alabel = _to_alabel(label)
    if len(alabel) > MAX_LABEL:
        raise _fail(f"label {label!r} is longer than {MAX_LABEL} characters")
    return alabel, _to_ulabel(alabel)


def _split(name: str) -> tuple[str, str]:
    """A whole name → (ascii, unicode), without zone or canonical checks."""
    text = name.strip().translate(_DOTS)
    if text.endswith("."):
        text = text[:-1]  # one trailing dot (absolute form) is accepted and dropped
    if not text:
        raise _fail("the domain name is empty")
    if "*" in text:
        raise _fail(f"wildcards are not allowed: {name!r}")
    pairs = [_normalize_label(label, name) for label in text.split(".")]
    ascii_name = ".".join(a for a, _ in pairs)
    if len(ascii_name) > MAX_NAME:
        raise _fail(f"the name is longer than {MAX_NAME} characters")
    return ascii_name, ".".join(u for _, u in pairs)


def normalize_zone(zone: str) -> str:
    """A configured zone → lowercase A-label without the trailing dot."""
    return _split(zone)[0]


def effective_zones(dns_zones: Iterable[str], apps_domain: str) -> list[str]:
    """The zones aliases may live under: ``RDEV_DNS_ZONES``, or the apps domain when unset."""
    zones = [z for z in dns_zones if z and z.strip()]
    return zones or [apps_domain]


def normalize_alias(name: str, zones: list[str], canonical_names: set[str]) -> Alias:
    """Validate a requested alias and return its normalized forms.

    ``zones`` are the allowed zones (e.g. ``settings.dns_zones``, see :func:`effective_zones`);
    ``canonical_names`` the canonical hostnames of all projects, which no alias may take.
    """
    if not zones:
        raise _fail("no DNS zones are configured for aliases (RDEV_DNS_ZONES)")
    ascii_name, unicode_name = _split(name)
    normalized_zones = sorted({normalize_zone(z) for z in zones}, key=len, reverse=True)
    if ascii_name in normalized_zones:
        raise _fail(
            f"{ascii_name!r} is a zone apex; an alias must lie below it "
            "(the apex cannot hold a CNAME)"
        )
    zone = next((z for z in normalized_zones if ascii_name.endswith("." + z)), None)
    if zone is None:
        allowed = ", ".join(sorted(normalized_zones))
        raise _fail(f"{ascii_name!r} is not under an allowed zone ({allowed})")
    canonical = {c.strip().rstrip(".").lower() for c in canonical_names}
    if ascii_name in canonical:
        raise _fail(f"{ascii_name!r} is a project's canonical hostname and cannot be an alias")
    return Alias(ascii=ascii_name, unicode=unicode_name, zone=zone)


def canonical_hostname(project_name: str, apps_domain: str) -> str:
    """The project's own hostname ``{project}.{apps_domain}`` (lowercase A-labels, no dot).

    The project name becomes one label: lowercased, with ``_``, ``.`` and spaces turned into
    hyphens. A name that still isn't a valid label raises ``ValidationFailed(field="name")``.
    """
    label = re.sub(r"[_.\s]+", "-", project_name.strip().lower())
    try:
        alabel, _ = _normalize_label(label, project_name)
        domain = normalize_zone(apps_domain)
    except ValidationFailed as exc:
        raise ValidationFailed(
            f"project name {project_name!r} cannot form a hostname: {exc.detail}", field="name"
        ) from None
    hostname = f"{alabel}.{domain}"
    if len(hostname) > MAX_NAME:
        raise ValidationFailed(
            f"hostname for project {project_name!r} is longer than {MAX_NAME} characters",
            field="name",
        )
    return hostname
