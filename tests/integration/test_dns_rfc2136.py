"""Rfc2136DNS against a real BIND 9: aliases placed, read, removed, and every failure told."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rdev.adapters.dns import NoDNS, Rfc2136DNS
from rdev.bootstrap import dns_provider
from rdev.config import Settings
from rdev.ports.dns import DNSConflict, DNSError
from tests.fixtures.bind import BindServer, free_port, running_bind

TARGET = "myproj.apps.test"


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[BindServer]:
    yield from running_bind(tmp_path / "bind")


def provider(bind: BindServer, **overrides: object) -> Rfc2136DNS:
    return Rfc2136DNS(**bind.provider_kwargs(**overrides))  # type: ignore[arg-type]


async def test_added_alias_is_served_as_cname_to_the_canonical_hostname(
    bind: BindServer,
) -> None:
    dns = provider(bind)
    await dns.add_cname("shop.apps.test", TARGET)
    assert bind.query("shop.apps.test", "CNAME") == ["myproj.apps.test."]
    assert await dns.lookup_cname("shop.apps.test") == "myproj.apps.test."


async def test_target_without_trailing_dot_is_not_made_relative_to_the_zone(
    bind: BindServer,
) -> None:
    dns = provider(bind)
    await dns.add_cname("ext.apps.test", "app.example.com")
    assert bind.query("ext.apps.test", "CNAME") == ["app.example.com."]


async def test_removed_alias_is_no_longer_served(bind: BindServer) -> None:
    dns = provider(bind)
    await dns.add_cname("gone.apps.test", TARGET)
    await dns.remove_cname("gone.apps.test")
    assert bind.query("gone.apps.test", "CNAME") == []
    assert await dns.lookup_cname("gone.apps.test") is None
    await dns.remove_cname("gone.apps.test")  # removing again is harmless


async def test_remove_with_target_keeps_an_alias_repointed_elsewhere(
    bind: BindServer,
) -> None:
    dns = provider(bind)
    await dns.add_cname("moved.apps.test", "other.apps.test")
    await dns.remove_cname("moved.apps.test", TARGET)
    assert bind.query("moved.apps.test", "CNAME") == ["other.apps.test."]
    await dns.remove_cname("moved.apps.test", "other.apps.test")
    assert bind.query("moved.apps.test", "CNAME") == []


async def test_remove_never_deletes_other_records_at_the_name(bind: BindServer) -> None:
    bind.add_record("www.apps.test", "A", "127.0.0.30")
    await provider(bind).remove_cname("www.apps.test")
    assert bind.query("www.apps.test", "A") == ["127.0.0.30"]


async def test_alias_survives_a_bind_restart(bind: BindServer) -> None:
    dns = provider(bind)
    await dns.add_cname("durable.apps.test", TARGET)
    bind.stop()
    bind.start()
    assert bind.query("durable.apps.test", "CNAME") == ["myproj.apps.test."]
    assert await dns.lookup_cname("durable.apps.test") == "myproj.apps.test."


async def test_adding_the_same_alias_twice_is_idempotent(bind: BindServer) -> None:
    dns = provider(bind)
    await dns.add_cname("twice.apps.test", TARGET)
    await dns.add_cname("TWICE.apps.test.", "MyProj.apps.test.")
    assert bind.query("twice.apps.test", "CNAME") == ["myproj.apps.test."]


async def test_alias_on_a_name_with_an_a_record_is_a_conflict(bind: BindServer) -> None:
    bind.add_record("taken.apps.test", "A", "127.0.0.20")
    with pytest.raises(DNSConflict, match="other DNS records"):
        await provider(bind).add_cname("taken.apps.test", TARGET)
    assert bind.query("taken.apps.test", "CNAME") == []
    assert bind.query("taken.apps.test", "A") == ["127.0.0.20"]


async def test_alias_already_pointing_elsewhere_is_a_conflict(bind: BindServer) -> None:
    dns = provider(bind)
    await dns.add_cname("busy.apps.test", "other.apps.test")
    with pytest.raises(DNSConflict, match="other.apps.test"):
        await dns.add_cname("busy.apps.test", TARGET)
    assert bind.query("busy.apps.test", "CNAME") == ["other.apps.test."]


async def test_concurrent_adds_with_different_targets_leave_exactly_one(
    bind: BindServer,
) -> None:
    dns = provider(bind)
    targets = [f"p{i}.apps.test" for i in range(4)]
    results = await asyncio.gather(
        *(dns.add_cname("race.apps.test", t) for t in targets), return_exceptions=True
    )
    winners = [t for t, r in zip(targets, results, strict=True) if r is None]
    losers = [r for r in results if r is not None]
    assert len(winners) == 1, results
    assert all(isinstance(r, DNSConflict) for r in losers), losers
    assert bind.query("race.apps.test", "CNAME") == [winners[0] + "."]


async def test_wrong_tsig_secret_is_a_dns_error_without_the_secret(
    bind: BindServer,
) -> None:
    wrong = base64.b64encode(os.urandom(32)).decode()
    dns = provider(bind, tsig_secret=wrong)
    with pytest.raises(DNSError) as info:
        await dns.add_cname("nokey.apps.test", TARGET)
    message = str(info.value)
    assert "BADSIG" in message
    assert wrong not in message and bind.key_secret not in message
    assert wrong not in repr(dns)
    assert bind.query("nokey.apps.test", "CNAME") == []


async def test_unknown_tsig_key_name_is_a_dns_error(bind: BindServer) -> None:
    dns = provider(bind, tsig_name="someone-else")
    with pytest.raises(DNSError, match="BADKEY|NOTAUTH") as info:
        await dns.add_cname("nokey.apps.test", TARGET)
    assert bind.key_secret not in str(info.value)


async def test_unsigned_update_is_refused(bind: BindServer) -> None:
    dns = provider(bind, tsig_name=None, tsig_secret=None)
    with pytest.raises(DNSError, match="REFUSED"):
        await dns.add_cname("unsigned.apps.test", TARGET)


async def test_zone_the_server_does_not_serve_is_a_dns_error(bind: BindServer) -> None:
    dns = provider(bind, zones=["other.test"])
    with pytest.raises(DNSError, match="NOTAUTH"):
        await dns.add_cname("x.other.test", "myproj.apps.test")


async def test_alias_outside_the_configured_zones_is_a_dns_error(
    bind: BindServer,
) -> None:
    with pytest.raises(DNSError, match="not below a configured DNS zone"):
        await provider(bind).add_cname("apps.test", TARGET)


async def test_stopped_server_is_a_dns_error_without_waiting_for_the_timeout(
    bind: BindServer,
) -> None:
    dns = provider(bind)
    bind.stop()
    # "refused", not "did not answer within": the error came from the refused connection,
    # not from waiting out the timeout (TCP is used, so a stopped server is a refusal).
    with pytest.raises(DNSError, match="refused the connection"):
        await dns.add_cname("down.apps.test", TARGET)
    with pytest.raises(DNSError, match="refused the connection"):
        await dns.lookup_cname("down.apps.test")


async def test_silent_server_is_a_dns_error_after_the_timeout() -> None:
    # A listening socket that never answers: connect succeeds, the reply never comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        dns = Rfc2136DNS(
            "127.0.0.1",
            silent.getsockname()[1],
            ["apps.test"],
            None,
            "hmac-sha256",
            None,
            timeout=0.5,
        )
        # The socket never answers: only the 0.5 s timeout can end the call, which a
        # failure-only 60 s deadline bounds.
        with pytest.raises(DNSError, match=r"did not answer within 0.5s"):
            await asyncio.wait_for(dns.add_cname("slow.apps.test", TARGET), 60)


def test_bad_settings_are_refused_without_echoing_the_secret() -> None:
    with pytest.raises(ValueError, match="not valid base64") as info:
        Rfc2136DNS("127.0.0.1", 53, ["apps.test"], "k", "hmac-sha256", "s3cret!not-b64")
    assert "s3cret" not in str(info.value)
    with pytest.raises(ValueError, match="unknown TSIG algorithm"):
        Rfc2136DNS("127.0.0.1", 53, ["apps.test"], "k", "hmac-foo", "AAAA")
    with pytest.raises(ValueError, match="both"):
        Rfc2136DNS("127.0.0.1", 53, ["apps.test"], "k", "hmac-sha256", None)


async def test_settings_pick_the_provider() -> None:
    none = dns_provider(Settings(dns_provider="none"))
    assert isinstance(none, NoDNS)
    await none.add_cname("a.apps.test", TARGET)
    assert await none.lookup_cname("a.apps.test") is None
    secret = base64.b64encode(os.urandom(32)).decode()
    port = free_port()
    built = dns_provider(
        Settings(
            dns_provider="rfc2136",
            dns_server="127.0.0.1",
            dns_port=port,
            dns_zones="apps.test",
            dns_tsig_name="k",
            dns_tsig_secret=secret,
        )
    )
    assert isinstance(built, Rfc2136DNS)
    assert (built.server, built.port) == ("127.0.0.1", port)
    assert secret not in repr(built)
    with pytest.raises(ValueError, match="unknown RDEV_DNS_PROVIDER"):
        dns_provider(Settings(dns_provider="route53"))
