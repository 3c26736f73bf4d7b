"""SSRF guard for callback URLs: which addresses a webhook may reach, and why not.

Callback URLs come from bots, so a URL must not reach the server's own network: loopback,
private, link-local (cloud metadata at 169.254.169.254), CGNAT, multicast, reserved and
documentation ranges are refused, also when hidden inside IPv6 (IPv4-mapped, NAT64, 6to4,
Teredo). The operator's allowlist (``RDEV_WEBHOOK_ALLOWLIST``: CIDRs, host names, ``*.domain``)
admits exceptions. ``address_allowed`` and ``refusal_reason`` are pure; ``check_url`` resolves
the host through an injectable resolver, so tests never touch the network.

The sender pins the addresses ``check_url`` returns (DNS rebinding defence): checking a name
and then letting the HTTP client resolve it again would check nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from rdev.domain.errors import ValidationFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``async resolve(host, port) -> addresses``; raise OSError when the name does not resolve.
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


class CallbackRefused(ValidationFailed):
    """A callback URL may not be called. ``reason`` says why (no path, query or secret in it).

    ``permanent``: retrying will not help (scheme, userinfo, refused address). As a
    ValidationFailed it maps to 422 on the ``callback_url`` field when raised at submit time.
    """

    code = "callback-refused"
    permanent = True

    def __init__(self, reason: str, *, field: str | None = "callback_url") -> None:
        super().__init__(f"callback URL refused: {reason}", field=field)
        self.reason = reason


class CallbackUnresolvable(CallbackRefused):
    """The callback host did not resolve: possibly transient, so a delivery may be retried."""

    code = "callback-unresolvable"
    permanent = False


# Checked in order; the first match names the reason. IPv6 forms that embed an IPv4 address
# are unwrapped before this table (see _embedded_ipv4).
_REFUSED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), label)
    for cidr, label in (
        ("0.0.0.0/8", "'this network' / unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "carrier-grade NAT (shared address space)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.0.2.0/24", "documentation"),
        ("192.88.99.0/24", "6to4 relay anycast"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved / broadcast"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("::/8", "reserved"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("2001::/32", "Teredo tunnel"),
        ("2001:db8::/32", "documentation"),
        ("3fff::/20", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class AllowList:
    """Operator exceptions to the SSRF rules.

    ``networks`` admit addresses; ``hosts`` admit a URL host name exactly (whatever it resolves
    to); ``domains`` (from ``*.example.internal``) admit any name below that domain.
    """

    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Parse ``["127.0.0.1/32", "10.1.2.3", "hooks.internal", "*.svc.local"]``.

        Raises ValueError for an entry that is neither a CIDR/address nor a host name.
        """
        networks: list[IPNetwork] = []
        hosts: set[str] = set()
        domains: list[str] = []
        for raw in entries:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            wildcard = entry.startswith("*.")
            name = _normalise_host(entry[2:] if wildcard else entry)
            if not _is_host_name(name):
                raise ValueError(f"webhook allowlist entry {entry!r} is not a CIDR or host name")
            if wildcard:
                domains.append(name)
            else:
                hosts.add(name)
        return cls(tuple(networks), frozenset(hosts), tuple(domains))

    def __bool__(self) -> bool:
        return bool(self.networks or self.hosts or self.domains)

    def admits_address(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self.networks)

    def admits_host(self, host: str) -> bool:
        name = _normalise_host(host)
        return name in self.hosts or any(name.endswith("." + d) for d in self.domains)


def _normalise_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _is_host_name(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_HOST_LABEL.match(p) for p in name.split("."))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for, if it embeds one, and the form's name."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4"
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo"
    return None


def refusal_reason(ip: IPAddress, allowlist: AllowList | None = None) -> str | None:
    """Why a webhook may not connect to ``ip``, or None if it may. Pure, no network."""
    allowlist = allowlist or AllowList()
    if allowlist.admits_address(ip):
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            v4, form = embedded
            inner = refusal_reason(v4, allowlist)
            if inner is not None:
                return f"{ip} ({form} {v4}): {inner}"
            if form in ("IPv4-mapped", "NAT64"):
                return None  # judged as the IPv4 address it stands for, which is fine
    for net, label in _REFUSED_NETWORKS:
        if ip in net:
            return f"{ip} is {label} ({net})"
    if not ip.is_global:
        return f"{ip} is not a globally routable address"
    return None


def address_allowed(ip: IPAddress, allowlist: AllowList | None = None) -> bool:
    """True if a webhook may connect to ``ip`` (public, or admitted by the allowlist)."""
    return refusal_reason(ip, allowlist) is None


@dataclass(frozen=True)
class CallbackTarget:
    """A parsed callback URL: what to resolve, connect to and ask for."""

    scheme: str
    host: str  # lower case, ASCII (IDNA), no brackets, no trailing dot
    port: int
    target: str  # path + query, at least "/"
    literal_ip: IPAddress | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


def parse_callback_url(url: str) -> CallbackTarget:
    """Parse and vet the shape of a callback URL; raise CallbackRefused if it is unusable."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise CallbackRefused("not a valid URL (bad host or port)") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise CallbackRefused("only http and https URLs are allowed")
    if "@" in parts.netloc:
        # Credentials would end up in the database and logs; the signature authenticates us.
        raise CallbackRefused("credentials (user:password@) in the URL are not allowed")
    if not parts.hostname:
        raise CallbackRefused("the URL has no host")
    if port == 0:
        raise CallbackRefused("port 0 is not allowed")
    host = _normalise_host(parts.hostname)
    literal: IPAddress | None
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise CallbackRefused("the host name is not valid") from None
        if not _is_host_name(host):
            raise CallbackRefused("the host name is not valid")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return CallbackTarget(scheme, host, port or DEFAULT_PORTS[scheme], target, literal)


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """The default resolver: the system's getaddrinfo (hosts file, DNS) off the event loop."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[IPAddress] = []
    for family, _type, _proto, _canon, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(str(sockaddr[0]))
        if ip not in addresses:
            addresses.append(ip)
    return addresses


async def check_target(
    target: CallbackTarget, allowlist: AllowList | None = None, resolve: Resolver = resolve_host
) -> list[IPAddress]:
    """Resolve once and vet every address; the result is what the sender may connect to."""
    allowlist = allowlist or AllowList()
    if target.literal_ip is not None:
        addresses = [target.literal_ip]
    else:
        try:
            addresses = list(dict.fromkeys(await resolve(target.host, target.port)))
        except (OSError, UnicodeError) as exc:
            why = (exc.strerror if isinstance(exc, OSError) else None) or "lookup failed"
            raise CallbackUnresolvable(f"host {target.host} does not resolve ({why})") from None
        if not addresses:
            raise CallbackUnresolvable(f"host {target.host} has no addresses")
        if allowlist.admits_host(target.host):
            return addresses
    for ip in addresses:
        if (reason := refusal_reason(ip, allowlist)) is not None:
            if target.literal_ip is not None:
                raise CallbackRefused(reason)
            raise CallbackRefused(f"host {target.host} resolves to {reason}")
    return addresses


async def check_url(
    url: str, allowlist: AllowList | None = None, resolve: Resolver = resolve_host
) -> list[IPAddress]:
    """Vet a callback URL (shape, then every resolved address); return the addresses.

    Raises CallbackRefused (permanent) or CallbackUnresolvable (maybe transient). Call it at
    submit time to reject bad URLs early; the sender calls it again at send time.
    """
    return await check_target(parse_callback_url(url), allowlist, resolve)
