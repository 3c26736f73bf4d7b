"""SSRF guard: refused and admitted addresses, the allowlist, URL shape. Pure calls, no traffic."""

from __future__ import annotations

import ipaddress

import pytest

from rdev.adapters.webhooks.ssrf import (
    AllowList,
    CallbackRefused,
    CallbackUnresolvable,
    IPAddress,
    address_allowed,
    check_url,
    parse_callback_url,
    refusal_reason,
)

NOBODY = AllowList()


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def fake_resolver(table: dict[str, list[str]]):
    """Answers from a table; unknown names fail like getaddrinfo does. Records every lookup."""
    calls: list[tuple[str, int]] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append((host, port))
        if host not in table:
            raise OSError(-2, "Name or service not known")
        return [ip(a) for a in table[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("192.0.2.1", "documentation"),
        ("2001:db8::1", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 wrapping 127.0.0.1
        ("2002:a00:1::1", "private"),  # 6to4 wrapping 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 wrapping 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo client 127.0.0.1
    ],
)
def test_internal_addresses_are_refused_with_a_reason(address: str, why: str) -> None:
    assert not address_allowed(ip(address), NOBODY)
    reason = refusal_reason(ip(address), NOBODY)
    assert reason is not None and why in reason


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "1.1.1.1", "2606:4700::1", "::ffff:93.184.216.34", "2002:5db8:d822::1"],
)
def test_public_addresses_are_admitted(address: str) -> None:
    assert address_allowed(ip(address), NOBODY)
    assert address_allowed(ip(address))  # no allowlist at all


def test_allowlisted_cidr_admits_its_addresses_only() -> None:
    allow = AllowList.parse(["127.0.0.1/32", "10.20.0.0/16", "fd00::/8"])
    assert address_allowed(ip("127.0.0.1"), allow)
    assert address_allowed(ip("::ffff:127.0.0.1"), allow)  # judged as its IPv4
    assert address_allowed(ip("10.20.3.4"), allow)
    assert address_allowed(ip("fd00::5"), allow)
    assert not address_allowed(ip("127.0.0.2"), allow)
    assert not address_allowed(ip("10.21.0.1"), allow)
    assert not address_allowed(ip("::1"), allow)


def test_allowlist_parses_addresses_cidrs_host_names_and_wildcard_domains() -> None:
    allow = AllowList.parse(
        [" 192.168.5.7 ", "hooks.internal", "Bot.Example.COM.", "*.svc.local", ""]
    )
    assert allow.networks == (ipaddress.ip_network("192.168.5.7/32"),)
    assert allow.admits_host("hooks.internal")
    assert allow.admits_host("bot.example.com")
    assert allow.admits_host("a.b.svc.local") and not allow.admits_host("svc.local")
    assert not allow.admits_host("hooks.internal.evil.com")
    assert not AllowList.parse([]) and allow


@pytest.mark.parametrize("entry", ["not a host!", "http://x/", "a..b"])
def test_allowlist_rejects_garbage_entries(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse([entry])


async def test_check_url_returns_the_resolved_public_addresses() -> None:
    resolve = fake_resolver({"hooks.example.com": ["93.184.216.34", "2606:4700::1"]})
    addresses = await check_url("https://hooks.example.com/cb?x=1", NOBODY, resolve=resolve)
    assert addresses == [ip("93.184.216.34"), ip("2606:4700::1")]
    assert resolve.calls == [("hooks.example.com", 443)]


async def test_a_host_name_resolving_to_loopback_is_refused() -> None:
    resolve = fake_resolver({"localhost": ["127.0.0.1", "::1"]})
    with pytest.raises(CallbackRefused) as info:
        await check_url("http://localhost:8080/", NOBODY, resolve=resolve)
    assert "localhost resolves to 127.0.0.1 is loopback" in info.value.reason
    assert info.value.permanent and info.value.field == "callback_url"


async def test_one_internal_address_among_public_ones_refuses_the_url() -> None:
    resolve = fake_resolver({"mixed.example": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(CallbackRefused, match="10.0.0.5 is private"):
        await check_url("http://mixed.example/", NOBODY, resolve=resolve)


async def test_literal_ip_urls_are_judged_without_resolving() -> None:
    resolve = fake_resolver({})
    with pytest.raises(CallbackRefused, match="169.254.169.254 is link-local"):
        await check_url("http://169.254.169.254/latest/meta-data/", NOBODY, resolve=resolve)
    with pytest.raises(CallbackRefused, match="loopback"):
        await check_url("http://[::ffff:127.0.0.1]:9000/", NOBODY, resolve=resolve)
    assert await check_url("http://[2606:4700::1]/", NOBODY, resolve=resolve) == [
        ip("2606:4700::1")
    ]
    assert resolve.calls == []


async def test_allowlisted_cidr_and_host_name_are_admitted() -> None:
    resolve = fake_resolver({"hooks.internal": ["10.1.2.3"], "other.internal": ["10.1.2.3"]})
    by_cidr = AllowList.parse(["127.0.0.1/32"])
    assert await check_url("http://127.0.0.1:5000/h", by_cidr, resolve=resolve) == [ip("127.0.0.1")]
    by_name = AllowList.parse(["hooks.internal"])
    assert await check_url("http://hooks.internal/h", by_name, resolve=resolve) == [ip("10.1.2.3")]
    with pytest.raises(CallbackRefused):  # the name admits itself, not its addresses for others
        await check_url("http://other.internal/h", by_name, resolve=resolve)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/", "only http and https"),
        ("file:///etc/passwd", "only http and https"),
        ("gopher://example.com:70/", "only http and https"),
        ("http:///path-only", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://token@example.com/", "credentials"),
        ("http://example.com:99999/", "port"),
        ("http://example.com:0/", "port 0"),
        ("http://exa mple.com/", "not valid"),
    ],
)
async def test_unusable_url_shapes_are_refused_before_any_lookup(url: str, why: str) -> None:
    resolve = fake_resolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(CallbackRefused) as info:
        await check_url(url, NOBODY, resolve=resolve)
    assert why in info.value.reason
    assert "pw" not in info.value.detail and "token" not in info.value.detail
    assert resolve.calls == []


async def test_an_unresolvable_host_is_refused_but_not_permanently() -> None:
    with pytest.raises(CallbackUnresolvable) as info:
        await check_url("https://nowhere.invalid/", NOBODY, resolve=fake_resolver({}))
    assert not info.value.permanent
    assert "nowhere.invalid does not resolve" in info.value.reason


def test_parsed_target_keeps_path_and_query_and_brackets_ipv6_in_the_host_header() -> None:
    t = parse_callback_url("HTTP://Hooks.Example.COM./a/b?c=d#frag")
    assert (t.scheme, t.host, t.port, t.target) == ("http", "hooks.example.com", 80, "/a/b?c=d")
    assert t.host_header == "hooks.example.com"
    v6 = parse_callback_url("https://[2606:4700::1]:8443")
    assert (v6.host, v6.target, v6.host_header) == ("2606:4700::1", "/", "[2606:4700::1]:8443")
    idn = parse_callback_url("https://bücher.example/")
    assert idn.host == "xn--bcher-kva.example"
