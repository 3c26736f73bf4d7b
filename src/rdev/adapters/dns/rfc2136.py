"""DNSProvider over RFC 2136 dynamic updates signed with TSIG (BIND, Knot, PowerDNS, ...).

Every request goes over TCP to one primary server: a stopped server is then a prompt
"connection refused" rather than a UDP timeout, and large answers are never truncated.

Decisions worth knowing (see docs/dns.md, "DNS facts rdev relies on"):

* ``add_cname`` sends the update with the RFC 2136 prerequisite "name is not in use"
  (``absent``). BIND answers NOERROR yet silently ignores a CNAME added beside other
  records; the prerequisite turns that case, and a concurrent add of the same alias,
  into YXDOMAIN, which we report as :class:`DNSConflict` — unless the alias already
  points at the requested target, which makes ``add_cname`` idempotent.
* CNAME targets are built as absolute ``dns.name.Name`` objects: text without a trailing
  dot would be read relative to the zone (``app.example.com.apps.test.``).
* ``remove_cname(alias, target)`` deletes only if the CNAME still points at ``target``
  (value-dependent prerequisite), so it never removes an alias someone re-pointed.
* Errors carry the server, the alias and the reason — never the TSIG secret (every
  message passes the one secret scrubber).
"""

from __future__ import annotations

import asyncio
import base64
import binascii

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.tsig
import dns.update

from rdev.domain.secrets import SecretScrubber
from rdev.ports.dns import DNSConflict, DNSError

_ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-md5": dns.tsig.HMAC_MD5,
    "hmac-sha1": dns.tsig.HMAC_SHA1,
    "hmac-sha224": dns.tsig.HMAC_SHA224,
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}


def _absolute(name: str) -> dns.name.Name:
    """Text → absolute name (``from_text`` without an origin appends the root)."""
    try:
        return dns.name.from_text(name.strip())
    except dns.exception.DNSException as exc:
        raise DNSError(f"{name!r} is not a valid DNS name ({exc})") from None


class Rfc2136DNS:
    """Places, removes and reads CNAME aliases on one authoritative server.

    ``zones`` are the zones the server is primary for and the key may update; an alias is
    sent to the most specific zone it lies strictly below. ``tsig_name``/``tsig_secret``
    (base64) may both be ``None`` for a server that authorizes updates by address
    (not recommended). ``timeout`` bounds each round trip, in seconds.
    """

    name = "rfc2136"

    def __init__(
        self,
        server: str,
        port: int,
        zones: list[str],
        tsig_name: str | None,
        tsig_algorithm: str,
        tsig_secret: str | None,
        timeout: float = 5.0,
        ttl: int = 300,
    ) -> None:
        if not zones:
            raise ValueError("Rfc2136DNS needs at least one zone (RDEV_DNS_ZONES)")
        if (tsig_name is None) != (tsig_secret is None):
            raise ValueError("set both RDEV_DNS_TSIG_NAME and RDEV_DNS_TSIG_SECRET, or neither")
        self.server = server
        self.port = port
        self.timeout = timeout
        self.ttl = ttl
        self.zones = sorted(
            {_absolute(z) for z in zones}, key=lambda n: len(n.labels), reverse=True
        )
        self._scrubber = SecretScrubber([tsig_secret])
        self._key: dns.tsig.Key | None = None
        if tsig_name is not None and tsig_secret is not None:
            algorithm = _ALGORITHMS.get(tsig_algorithm.strip().lower().rstrip("."))
            if algorithm is None:
                known = ", ".join(sorted(_ALGORITHMS))
                raise ValueError(f"unknown TSIG algorithm {tsig_algorithm!r} (known: {known})")
            try:
                secret = base64.b64decode(tsig_secret.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("RDEV_DNS_TSIG_SECRET is not valid base64") from None
            if not secret:
                raise ValueError("RDEV_DNS_TSIG_SECRET is empty")
            self._key = dns.tsig.Key(_absolute(tsig_name), secret, algorithm)
        self._where = f"{server}:{port}"

    def __repr__(self) -> str:  # dns.tsig.Key's own repr shows the secret; ours must not
        key = self._key.name.to_text() if self._key else None
        return f"Rfc2136DNS(server={self._where!r}, zones={self.zones!r}, tsig_key={key!r})"

    # -- the port -----------------------------------------------------------------------

    async def add_cname(self, alias: str, target: str) -> None:
        owner, zone = self._locate(alias)
        rdata = self._cname(target)
        update = self._update(zone)
        update.absent(owner)  # prerequisite: no record of any type at the name
        update.add(owner, self.ttl, rdata)
        rcode = await self._rcode(update, f"adding alias {owner}")
        if rcode == dns.rcode.NOERROR:
            return
        if rcode in (dns.rcode.YXDOMAIN, dns.rcode.YXRRSET):
            current = await self.lookup_cname(alias)
            if current is not None and _same(current, rdata.target):
                return  # already there: adding is idempotent
            what = f"a CNAME to {current}" if current else "other DNS records"
            raise DNSConflict(
                f"cannot place alias {owner.to_text(omit_final_dot=True)}: "
                f"the name already has {what}"
            )
        raise self._rcode_error(rcode, f"adding alias {owner}", zone)

    async def remove_cname(self, alias: str, target: str | None = None) -> None:
        owner, zone = self._locate(alias)
        update = self._update(zone)
        if target is not None:
            # value-dependent prerequisite: only if the CNAME still points at target
            update.present(owner, self._cname(target))
        update.delete(owner, dns.rdatatype.CNAME)  # only the CNAME, never other records
        rcode = await self._rcode(update, f"removing alias {owner}")
        if rcode == dns.rcode.NOERROR:
            return
        if target is not None and rcode == dns.rcode.NXRRSET:
            return  # already gone, or re-pointed by someone else: not ours to delete
        raise self._rcode_error(rcode, f"removing alias {owner}", zone)

    async def lookup_cname(self, alias: str) -> str | None:
        owner, zone = self._locate(alias)
        query = dns.message.make_query(owner, dns.rdatatype.CNAME)
        query.flags &= ~dns.flags.RD  # ask the authoritative server itself, no recursion
        if self._key is not None:
            query.use_tsig(self._key)
        response = await self._send(query, f"looking up alias {owner}")
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return None
        if rcode != dns.rcode.NOERROR:
            raise self._rcode_error(rcode, f"looking up alias {owner}", zone)
        rrset = response.get_rrset(response.answer, owner, dns.rdataclass.IN, dns.rdatatype.CNAME)
        if not rrset:
            return None
        return str(rrset[0].target.to_text())

    # -- internals ----------------------------------------------------------------------

    def _locate(self, alias: str) -> tuple[dns.name.Name, dns.name.Name]:
        """The alias as an absolute name, and the most specific zone strictly above it."""
        owner = _absolute(alias)
        for zone in self.zones:
            if owner != zone and owner.is_subdomain(zone):
                return owner, zone
        zones = ", ".join(z.to_text(omit_final_dot=True) for z in self.zones)
        raise DNSError(f"alias {alias!r} is not below a configured DNS zone ({zones})")

    @staticmethod
    def _cname(target: str) -> dns.rdtypes.ANY.CNAME.CNAME:
        return dns.rdtypes.ANY.CNAME.CNAME(  # type: ignore[no-untyped-call]
            dns.rdataclass.IN, dns.rdatatype.CNAME, _absolute(target)
        )

    def _update(self, zone: dns.name.Name) -> dns.update.UpdateMessage:
        return dns.update.UpdateMessage(zone, keyring=self._key)

    async def _rcode(self, message: dns.message.Message, what: str) -> dns.rcode.Rcode:
        return (await self._send(message, what)).rcode()

    async def _send(self, message: dns.message.Message, what: str) -> dns.message.Message:
        """One TCP round trip; every failure becomes a DNSError with a plain reason."""
        where = self._where
        try:
            # dnspython's own timeout covers connect and read; wait_for is the backstop
            return await asyncio.wait_for(
                dns.asyncquery.tcp(message, self.server, timeout=self.timeout, port=self.port),
                self.timeout + 1.0,
            )
        except (dns.exception.Timeout, TimeoutError):
            reason = f"DNS server {where} did not answer within {self.timeout:g}s"
        except ConnectionRefusedError:
            reason = f"DNS server {where} refused the connection (is it running?)"
        except OSError as exc:
            reason = f"DNS server {where} is unreachable ({exc.strerror or type(exc).__name__})"
        except dns.tsig.PeerBadSignature:
            reason = (
                f"DNS server {where} rejected the TSIG signature (BADSIG): "
                f"wrong secret for key {self._key_name()}?"
            )
        except dns.tsig.PeerBadKey:
            reason = f"DNS server {where} does not know TSIG key {self._key_name()} (BADKEY)"
        except dns.tsig.PeerBadTime:
            reason = f"DNS server {where} rejected the TSIG time (BADTIME): clocks differ"
        except dns.tsig.PeerError as exc:
            reason = f"DNS server {where} rejected the TSIG key ({type(exc).__name__})"
        except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime):
            reason = f"the answer from DNS server {where} failed TSIG verification"
        except dns.exception.DNSException as exc:
            reason = f"bad answer from DNS server {where} ({type(exc).__name__})"
        raise DNSError(self._scrubber.scrub(f"{what}: {reason}"))

    def _rcode_error(self, rcode: dns.rcode.Rcode, what: str, zone: dns.name.Name) -> DNSError:
        where, text = self._where, dns.rcode.to_text(rcode)
        if rcode == dns.rcode.REFUSED:
            reason = (
                f"DNS server {where} refused (REFUSED): the key may not change this "
                "name or type (update-policy / allow-update), or is missing"
            )
        elif rcode == dns.rcode.NOTAUTH:
            reason = (
                f"DNS server {where} is not authoritative for zone {zone} "
                f"or did not accept the key (NOTAUTH)"
            )
        elif rcode == dns.rcode.NOTZONE:
            reason = f"the name is outside zone {zone} (NOTZONE)"
        else:
            reason = f"DNS server {where} answered {text}"
        return DNSError(self._scrubber.scrub(f"{what}: {reason}"))

    def _key_name(self) -> str:
        return repr(self._key.name.to_text()) if self._key else "(none)"


def _same(current: str, target: dns.name.Name) -> bool:
    return bool(_absolute(current) == target)  # dns.name equality ignores case
