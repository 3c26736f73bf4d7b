"""Alias hostname rules: what is refused (and which rule says so) and how names normalize."""

from __future__ import annotations

import pytest

from rdev.domain.errors import ValidationFailed
from rdev.domain.hostnames import (
    Alias,
    canonical_hostname,
    effective_zones,
    normalize_alias,
)

ZONES = ["apps.test"]
CANONICAL = {"myproj.apps.test"}


def refused(name: str, zones: list[str] = ZONES) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        normalize_alias(name, zones, CANONICAL)
    assert info.value.field == "domain"
    return info.value


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("a..b.apps.test", "empty label"),
        (".a.apps.test", "empty label"),
        ("-x.apps.test", "hyphen"),
        ("x-.apps.test", "hyphen"),
        ("a_b.apps.test", "RFC 1123"),
        ("a b.apps.test", "RFC 1123"),
        ("a" * 64 + ".apps.test", "longer than 63"),
        ("*.apps.test", "wildcard"),
        ("a.*.apps.test", "wildcard"),
        ("evil.example.org", "not under an allowed zone"),
        ("xapps.test", "not under an allowed zone"),
        ("apps.test", "zone apex"),
        ("myproj.apps.test", "canonical hostname"),
        ("MyProj.Apps.Test.", "canonical hostname"),
        ("", "empty"),
        ("xn--zz.apps.test", "IDNA"),
    ],
)
def test_invalid_alias_is_refused_naming_the_rule(name: str, rule: str) -> None:
    assert rule in refused(name).detail


def test_name_longer_than_253_is_refused() -> None:
    longest = ".".join(["a" * 60] * 4) + ".apps.test"
    assert len(longest) == 253
    assert normalize_alias(longest, ZONES, CANONICAL).ascii == longest
    assert "253" in refused("b" + longest).detail


def test_no_zones_configured_refuses_every_alias() -> None:
    assert "no DNS zones" in refused("x.apps.test", zones=[]).detail


def test_unicode_alias_is_stored_as_a_label_and_shown_both_ways() -> None:
    alias = normalize_alias("bücher.apps.test", ZONES, CANONICAL)
    assert alias == Alias(
        ascii="xn--bcher-kva.apps.test", unicode="bücher.apps.test", zone="apps.test"
    )
    assert alias.fqdn == "xn--bcher-kva.apps.test."


def test_a_label_input_gives_the_same_alias_as_unicode_input() -> None:
    assert normalize_alias("xn--bcher-kva.apps.test", ZONES, CANONICAL) == normalize_alias(
        "BÜCHER.apps.test", ZONES, CANONICAL
    )


def test_uppercase_and_trailing_dot_are_normalized() -> None:
    alias = normalize_alias("  WWW.Shop.APPS.test. ", ["Apps.Test."], CANONICAL)
    assert alias.ascii == "www.shop.apps.test"
    assert alias.unicode == "www.shop.apps.test"


def test_most_specific_zone_is_chosen() -> None:
    alias = normalize_alias("a.eu.apps.test", ["apps.test", "eu.apps.test"], CANONICAL)
    assert alias.zone == "eu.apps.test"


def test_effective_zones_default_to_the_apps_domain() -> None:
    assert effective_zones([], "apps.test") == ["apps.test"]
    assert effective_zones(["a.test", "b.test"], "apps.test") == ["a.test", "b.test"]


def test_canonical_hostname_is_one_lowercase_label_under_the_apps_domain() -> None:
    assert canonical_hostname("MyProj", "Apps.Test.") == "myproj.apps.test"
    assert canonical_hostname("my_proj", "apps.test") == "my-proj.apps.test"


def test_project_name_that_cannot_be_a_label_is_refused() -> None:
    with pytest.raises(ValidationFailed) as info:
        canonical_hostname("-bad", "apps.test")
    assert info.value.field == "name"
