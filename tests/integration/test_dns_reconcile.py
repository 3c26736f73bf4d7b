"""reconcile() against a real BIND: drift found, reported, and (with fix) repaired."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rdev.adapters.dns import Rfc2136DNS
from rdev.adapters.dns.reconcile import Drift, reconcile
from tests.fixtures.bind import BindServer, running_bind


@pytest.fixture
def bind(tmp_path: Path) -> Iterator[BindServer]:
    yield from running_bind(tmp_path / "bind")


def provider(bind: BindServer, **overrides: object) -> Rfc2136DNS:
    return Rfc2136DNS(**bind.provider_kwargs(**overrides))  # type: ignore[arg-type]


EXPECTED = {
    "ok.apps.test": "myproj.apps.test",
    "deleted.apps.test": "myproj.apps.test",
    "repointed.apps.test": "myproj.apps.test",
}


async def _place_all(bind: BindServer, dns: Rfc2136DNS) -> None:
    for alias, target in EXPECTED.items():
        await dns.add_cname(alias, target)
    bind.delete_records("deleted.apps.test", "CNAME")  # behind rdev's back
    bind.delete_records("repointed.apps.test", "CNAME")
    bind.add_record("repointed.apps.test", "CNAME", "intruder.example.org.")


async def test_in_sync_aliases_report_no_drift(bind: BindServer) -> None:
    dns = provider(bind)
    await dns.add_cname("ok.apps.test", "myproj.apps.test")
    assert await reconcile({"ok.apps.test": "MyProj.apps.test."}, dns, fix=False) == []


async def test_drift_is_reported_without_changing_dns(bind: BindServer) -> None:
    dns = provider(bind)
    await _place_all(bind, dns)
    drifts = await reconcile(EXPECTED, dns, fix=False)
    assert drifts == [
        Drift("deleted.apps.test", "myproj.apps.test", None, "missing"),
        Drift("repointed.apps.test", "myproj.apps.test", "intruder.example.org.", "wrong"),
    ]
    assert bind.query("deleted.apps.test", "CNAME") == []
    assert bind.query("repointed.apps.test", "CNAME") == ["intruder.example.org."]


async def test_fix_puts_missing_and_wrong_aliases_back(bind: BindServer) -> None:
    dns = provider(bind)
    await _place_all(bind, dns)
    drifts = await reconcile(EXPECTED, dns, fix=True)
    assert [(d.alias, d.kind, d.fixed, d.error) for d in drifts] == [
        ("deleted.apps.test", "missing", True, None),
        ("repointed.apps.test", "wrong", True, None),
    ]
    for alias in EXPECTED:
        assert bind.query(alias, "CNAME") == ["myproj.apps.test."]
    assert await reconcile(EXPECTED, dns, fix=False) == []


async def test_fix_cannot_overwrite_other_records_and_says_so(bind: BindServer) -> None:
    bind.add_record("blocked.apps.test", "A", "127.0.0.40")
    drifts = await reconcile({"blocked.apps.test": "myproj.apps.test"}, provider(bind), True)
    assert len(drifts) == 1
    assert drifts[0].kind == "missing" and not drifts[0].fixed
    assert drifts[0].error is not None and drifts[0].error.startswith("conflict")
    assert bind.query("blocked.apps.test", "A") == ["127.0.0.40"]


async def test_unreachable_server_is_reported_per_alias(bind: BindServer) -> None:
    dns = provider(bind)
    bind.stop()
    drifts = await reconcile({"a.apps.test": "myproj.apps.test"}, dns, fix=True)
    assert [(d.kind, d.fixed) for d in drifts] == [("unreachable", False)]
    assert drifts[0].error is not None and "refused the connection" in drifts[0].error
