"""``rdev doctor`` and the start-up summary: what a person is told about this machine.

The doctor runs against real parts: the database of the ``container`` fixture (both
backends), an unreachable PostgreSQL on a closed loopback port, the installed Claude Code
CLI, a real BIND, the Woodpecker fake (held to the Woodpecker API document). The exit code
is tested through the real ``rdev doctor`` process.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from rdev.config import Settings
from rdev.doctor import Finding, render, run_checks, startup_summary
from tests.factories import create_woodpecker_project
from tests.fixtures.agent_clis import CLAUDE_VERSION, claude_bin  # noqa: F401 (fixture)
from tests.fixtures.bind import BindServer, bind_server  # noqa: F401 (fixture)
from tests.fixtures.fake_woodpecker import VERSION as WOODPECKER_VERSION
from tests.fixtures.fake_woodpecker import running_fake_woodpecker
from tests.fixtures.processes import free_port, run_rdev

REPO = "team/app"


def finding(findings: list[Finding], subject: str) -> Finding:
    matches = [f for f in findings if f.subject == subject]
    assert matches, f"no {subject!r} finding in {[f.subject for f in findings]}"
    return matches[0]


def doctor(tmp_path: Path, **rdev_env: str) -> subprocess.CompletedProcess[str]:
    data_dir = str(tmp_path / "data")
    return run_rdev("doctor", strip=("RDEV_", "ANTHROPIC_"), RDEV_DATA_DIR=data_dir, **rdev_env)


# -- exit code and advice ---------------------------------------------------------------------


def test_doctor_exits_nonzero_and_says_how_to_fix_a_default_agent_that_cannot_run(
    tmp_path: Path,
) -> None:
    run = doctor(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    command = next(line for line in lines if "agent command" in line)
    assert command.startswith("MISS")
    assert "fix: set RDEV_COMMAND_AGENT" in run.stdout
    assert "the default agent 'command' cannot run here" in lines[-1]


def test_doctor_passes_when_the_default_agent_can_run_and_reports_each_check(
    tmp_path: Path,
) -> None:
    run = doctor(tmp_path, RDEV_COMMAND_AGENT="echo hi > hi.txt")
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "ok    agent command" in out and "runs 'echo hi > hi.txt'" in out
    for subject in ("data dir", "database", "git", "sandbox tools"):
        assert any(line[6:].startswith(subject) for line in out.splitlines()), out
    assert "created on the first `rdev serve`" in out  # a fresh data dir is not an error
    assert "the default agent 'command' can run here" in out


# -- database -----------------------------------------------------------------------------------


async def test_doctor_sees_a_migrated_database_as_current(container: Any) -> None:
    found = finding(await run_checks(container.settings, env={}), "database")
    assert found.ok and "migrations current" in found.detail


async def test_an_unreachable_database_is_reported_with_its_fix_and_without_its_password(
    tmp_path: Path,
) -> None:
    port = free_port()  # nothing listens there
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"postgresql+psycopg://rdev:s3cret-pw@127.0.0.1:{port}/rdev",
    )
    findings = await run_checks(settings, env={})
    found = finding(findings, "database")
    assert not found.ok and "cannot connect" in found.detail
    assert found.fix == "start the database, or fix RDEV_DATABASE_URL"
    report = "\n".join(render(findings, settings))
    assert "s3cret-pw" not in report and f"rdev:***@127.0.0.1:{port}" in report


# -- agent CLIs ------------------------------------------------------------------------------------


async def test_claude_code_is_ready_only_with_a_model_key_and_shows_its_version(
    tmp_path: Path,
    claude_bin: Path,  # noqa: F811
) -> None:
    settings = Settings(data_dir=tmp_path, claude_bin=str(claude_bin))
    no_key = finding(
        await run_checks(settings, env={"PATH": os.environ["PATH"]}), "agent claude-code"
    )
    assert not no_key.ok and "no model API key" in no_key.detail
    assert no_key.fix and "ANTHROPIC_API_KEY" in no_key.fix

    env = {"PATH": os.environ["PATH"], "ANTHROPIC_API_KEY": "sk-ant-doctor-test"}
    found = finding(await run_checks(settings, env=env), "agent claude-code")
    assert found.ok and CLAUDE_VERSION in found.detail
    assert "sk-ant-doctor-test" not in found.detail


async def test_an_agent_cli_that_is_not_installed_gets_the_install_step(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, opencode_bin=str(tmp_path / "no-such-opencode"))
    found = finding(await run_checks(settings, env={"PATH": "/usr/bin:/bin"}), "agent opencode")
    assert not found.ok
    assert found.fix and "npm install -g opencode-ai" in found.fix


# -- DNS and CI, when configured --------------------------------------------------------------


async def test_dns_is_checked_only_when_configured_and_a_dead_server_is_reported(
    tmp_path: Path,
    bind_server: BindServer,  # noqa: F811
) -> None:
    assert not [
        f for f in await run_checks(Settings(data_dir=tmp_path), env={}) if f.subject == "dns"
    ]
    dns = {
        "dns_provider": "rfc2136",
        "dns_server": bind_server.server,
        "dns_zones": [bind_server.zone],
        "dns_tsig_name": bind_server.key_name,
        "dns_tsig_algorithm": bind_server.key_algorithm,
        "dns_tsig_secret": bind_server.key_secret,
    }
    live = Settings(data_dir=tmp_path, dns_port=bind_server.port, **dns)
    assert finding(await run_checks(live, env={}), "dns").ok

    dead = Settings(data_dir=tmp_path, dns_port=free_port(), **dns)
    findings = await run_checks(dead, env={})
    found = finding(findings, "dns")
    assert not found.ok and found.fix and "RDEV_DNS_SERVER" in found.fix
    assert bind_server.key_secret not in "\n".join(render(findings, dead))


async def test_each_projects_ci_server_is_asked_for_its_version(
    client: Any, container: Any
) -> None:
    dead_url = f"http://127.0.0.1:{free_port()}"
    with running_fake_woodpecker() as fake:
        fake.add_repo(REPO)
        for server_url in (fake.url, dead_url):
            await create_woodpecker_project(client, server_url, REPO, fake.token)
        findings = await run_checks(container.settings, env={})
        assert ("GET", "/api/version", []) in fake.requests

    live = finding(findings, f"ci {fake.url}")
    assert live.ok and live.detail == f"version {WOODPECKER_VERSION}"
    dead = finding(findings, f"ci {dead_url}")
    assert not dead.ok and "unreachable" in dead.detail
    assert dead.fix and "ci.server_url" in dead.fix


# -- the start-up summary -------------------------------------------------------------------


def test_the_startup_summary_shows_url_data_token_and_how_to_enable_each_agent(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data", opencode_bin=str(tmp_path / "none"))
    text = startup_summary(settings, "http://127.0.0.1:8080", "rdev_first_start_token", env={})
    assert "rdev is running at http://127.0.0.1:8080" in text
    assert f"data:        {(tmp_path / 'data').resolve()}" in text
    assert "bootstrap admin token (shown only once):\n\n    rdev_first_start_token" in text
    assert "command      not offered" in text
    assert "to enable: set RDEV_COMMAND_AGENT" in text
    assert "to enable: npm install -g opencode-ai" in text
    assert "warning: the default agent 'command' cannot run here" in text


def test_the_startup_summary_after_the_first_start_names_ready_agents_and_no_token(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, command_agent="true", admin_token=None)
    text = startup_summary(settings, "http://h:1", None, env={})
    assert "command      ready" in text
    assert "bootstrap" not in text and "warning" not in text
    assert "admin token: created on the first start" in text


def test_without_an_embedded_worker_the_summary_says_how_to_connect_workers(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, embedded_worker=False)
    text = startup_summary(settings, "http://h:1", None, env={})
    assert "no embedded worker" in text and "rdev worker --server" in text
