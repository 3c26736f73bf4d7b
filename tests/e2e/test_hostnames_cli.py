"""``rdev domains reconcile [--fix]`` as a real command against a real BIND 9 and the same
database the API wrote its aliases to (both backends).

An alias is added through the API, its CNAME is then deleted behind rdev's back; the CLI
subprocess, configured only through RDEV_* environment variables, reports the drift and
exits non-zero, ``--fix`` puts the CNAME back and exits 0. The TSIG secret never appears in
what the command prints.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import dns.message
import dns.query
import dns.rdatatype
import httpx
import pytest

from rdev.config import Settings
from tests.factories import create_project
from tests.fixtures.bind import BindServer, bind_server  # noqa: F401

pytestmark = pytest.mark.e2e


@pytest.fixture
def settings(settings: Settings, bind_server: BindServer) -> Settings:  # noqa: F811
    """conftest's settings, with DNS aliases served by the BIND fixture."""
    return settings.model_copy(
        update={
            "apps_domain": bind_server.zone,
            "dns_provider": "rfc2136",
            "dns_server": bind_server.server,
            "dns_port": bind_server.port,
            "dns_zones": [bind_server.zone],
            "dns_tsig_name": bind_server.key_name,
            "dns_tsig_algorithm": bind_server.key_algorithm,
            "dns_tsig_secret": bind_server.key_secret,
        }
    )


def tsig_secret(settings: Settings) -> str:
    """The TSIG secret in clear (the settings hold it wrapped), to pass on and look for."""
    assert settings.dns_tsig_secret is not None
    return settings.dns_tsig_secret.get_secret_value()


def cli_env(settings: Settings, **over: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
    env.update(
        RDEV_DATABASE_URL=settings.resolved_database_url,
        RDEV_DATA_DIR=str(settings.data_dir),
        RDEV_APPS_DOMAIN=settings.apps_domain,
        RDEV_DNS_PROVIDER="rfc2136",
        RDEV_DNS_SERVER=settings.dns_server,
        RDEV_DNS_PORT=str(settings.dns_port),
        RDEV_DNS_ZONES=",".join(settings.dns_zones),
        RDEV_DNS_TSIG_NAME=settings.dns_tsig_name or "",
        RDEV_DNS_TSIG_ALGORITHM=settings.dns_tsig_algorithm,
        RDEV_DNS_TSIG_SECRET=tsig_secret(settings),
        RDEV_LOG_LEVEL="DEBUG",
    )
    env.update(over)
    return env


def reconcile(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rdev.cli", "domains", "reconcile", *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def served_cname(bind: BindServer, name: str) -> list[str]:
    """What BIND answers for ``name`` CNAME, asked with dnspython directly."""
    response = dns.query.udp(
        dns.message.make_query(name, "CNAME"), bind.server, port=bind.port, timeout=3
    )
    return [
        r.to_text() for rrset in response.answer for r in rrset if r.rdtype == dns.rdatatype.CNAME
    ]


async def add_alias(client: httpx.AsyncClient, project: str, domain: str) -> None:
    r = await client.post(f"/projects/{project}/domains", json={"domain": domain})
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "active"


async def test_reconcile_reports_a_cname_deleted_behind_rdevs_back_and_fix_restores_it(
    settings: Settings,
    client: httpx.AsyncClient,
    bind_server: BindServer,  # noqa: F811
) -> None:
    project = await create_project(client)
    target = f"{project['name']}.{bind_server.zone}."
    await add_alias(client, project["name"], "drift.apps.test")
    await add_alias(client, project["name"], "steady.apps.test")
    assert served_cname(bind_server, "drift.apps.test") == [target]

    bind_server.delete_records("drift.apps.test", "CNAME")
    assert served_cname(bind_server, "drift.apps.test") == []
    env = cli_env(settings)
    secret = tsig_secret(settings)
    assert secret

    found = reconcile(env)
    out = found.stdout + found.stderr
    assert found.returncode != 0, out
    drift_lines = [line for line in found.stdout.splitlines() if "drift.apps.test" in line]
    assert len(drift_lines) == 1 and drift_lines[0].startswith("missing"), out
    assert target in drift_lines[0]
    assert "steady.apps.test" not in out
    assert "2 aliases checked, 1 drifted" in found.stdout
    assert served_cname(bind_server, "drift.apps.test") == []  # a report changes nothing

    fixed = reconcile(env, "--fix")
    out_fix = fixed.stdout + fixed.stderr
    assert fixed.returncode == 0, out_fix
    assert any("drift.apps.test" in line and "fixed" in line for line in fixed.stdout.splitlines())
    assert served_cname(bind_server, "drift.apps.test") == [target]
    assert served_cname(bind_server, "steady.apps.test") == [target]

    clean = reconcile(env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().splitlines()[-1] == "2 aliases checked, 0 drifted"

    for text in (out, out_fix, clean.stdout, clean.stderr):
        assert secret not in text


async def test_fix_with_a_wrong_tsig_secret_fails_without_printing_either_secret(
    settings: Settings,
    client: httpx.AsyncClient,
    bind_server: BindServer,  # noqa: F811
) -> None:
    project = await create_project(client)
    await add_alias(client, project["name"], "lost.apps.test")
    bind_server.delete_records("lost.apps.test", "CNAME")
    wrong = base64.b64encode(os.urandom(32)).decode()

    failed = reconcile(cli_env(settings, RDEV_DNS_TSIG_SECRET=wrong), "--fix")
    out = failed.stdout + failed.stderr
    assert failed.returncode != 0, out
    assert "lost.apps.test" in out
    assert "TSIG" in out  # the error says why, naming the key, not its secret
    assert served_cname(bind_server, "lost.apps.test") == []
    assert wrong not in out
    assert tsig_secret(settings) not in out
