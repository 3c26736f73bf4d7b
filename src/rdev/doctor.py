"""What this machine can run, and the one step that fixes what it cannot.

Two readers use it. ``rdev serve`` prints a short start-up summary (:func:`startup_summary`):
the URL, where the data lives, the admin token on first start, and for each agent whether
the embedded worker offers it. ``rdev doctor`` (:func:`run_checks`) looks deeper: the
database and its migrations, the data dir, git, each agent CLI's version, the sandbox
tools, and the DNS / repo-host / CI servers when they are configured. Its exit code is
non-zero when the configured default agent cannot run here, because then every build
that names no agent waits for ever.

Every finding says what was found and, when something is missing, how to fix it. Nothing
here prints a secret: database URLs are shown without their password, tokens never.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from rdev.adapters.agents.registry import build_agents
from rdev.bootstrap import agent_options, dns_provider
from rdev.config import Settings

#: The one step that makes an agent available, by agent name.
AGENT_FIXES: dict[str, str] = {
    "command": (
        "set RDEV_COMMAND_AGENT to a shell line; it runs in the build's checkout with the "
        "prompt in $RDEV_PROMPT and on stdin"
    ),
    "claude-code": (
        "npm install -g @anthropic-ai/claude-code and set ANTHROPIC_API_KEY "
        "(or RDEV_CLAUDE_BIN=/path/to/claude)"
    ),
    "opencode": (
        "npm install -g opencode-ai, then set RDEV_OPENCODE_MODEL and OPENAI_BASE_URL + "
        "OPENAI_API_KEY (or RDEV_OPENCODE_PROVIDER=anthropic with ANTHROPIC_API_KEY)"
    ),
}

#: Sandbox tools looked for on PATH (reported only: builds do not use them yet).
SANDBOX_TOOLS = ("bwrap", "podman", "docker")


@dataclass(frozen=True)
class Finding:
    """One line of a report: ``subject``, whether it is fine, what was seen, how to fix it."""

    subject: str
    ok: bool
    detail: str
    fix: str | None = None


@dataclass(frozen=True)
class AgentReadiness:
    name: str
    ready: bool
    reason: str | None  # why it cannot run here
    fix: str | None


def agent_readiness(
    settings: Settings, env: Mapping[str, str] | None = None
) -> list[AgentReadiness]:
    """Each known agent as this machine's (embedded) worker would offer it."""
    agents = build_agents(agent_options(settings), env)
    out = []
    for name in sorted({*agents, *AGENT_FIXES}):
        agent = agents.get(name)
        # build_agents leaves the command agent out when no command is configured
        reason = agent.availability() if agent else "no command configured (RDEV_COMMAND_AGENT)"
        out.append(AgentReadiness(name, reason is None, reason, reason and AGENT_FIXES.get(name)))
    return out


def display_database_url(settings: Settings) -> str:
    """The database URL without its password."""
    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


def startup_summary(
    settings: Settings,
    url: str,
    admin_token: str | None,
    env: Mapping[str, str] | None = None,
) -> str:
    """The lines ``rdev serve`` prints once at start-up, for the person who started it."""
    data_dir = settings.data_dir.resolve()
    lines = [
        "",
        f"rdev is running at {url}  (API docs {url}/docs, dashboard {url}/ui)",
        f"  data:        {data_dir}",
        f"  database:    {display_database_url(settings)}",
    ]
    if settings.repo_host == "local":
        lines.append(f"  repositories: {data_dir / 'repos'} (served at {url}/git)")
    if admin_token:
        lines += [
            "",
            "rdev: created bootstrap admin token (shown only once):",
            "",
            f"    {admin_token}",
            "",
        ]
    elif settings.admin_token:
        lines.append("  admin token: the value of RDEV_ADMIN_TOKEN")
    else:
        lines.append("  admin token: created on the first start (it was printed then)")
    if not settings.embedded_worker:
        lines.append(
            "  agents:      no embedded worker (RDEV_EMBEDDED_WORKER=0); connect workers "
            "with `rdev worker --server ...`"
        )
    else:
        lines.append("  agents this machine's embedded worker offers:")
        readiness = agent_readiness(settings, env)
        for a in readiness:
            if a.ready:
                lines.append(f"    {a.name:<12} ready")
            else:
                lines.append(f"    {a.name:<12} not offered: {a.reason}")
                if a.fix:
                    lines.append(f"    {'':<12} to enable: {a.fix}")
        if settings.default_agent not in {a.name for a in readiness if a.ready}:
            lines.append(
                f"  warning: the default agent {settings.default_agent!r} cannot run here; "
                "builds that name no agent stay pending (see above, or set RDEV_DEFAULT_AGENT)"
            )
    lines.append("  check this machine any time with `rdev doctor`")
    lines.append("")
    return "\n".join(lines)


# -- rdev doctor ----------------------------------------------------------------------------


async def run_checks(settings: Settings, env: Mapping[str, str] | None = None) -> list[Finding]:
    """Every check, in the order a person would fix things."""
    source = dict(env if env is not None else os.environ)
    findings = [_data_dir(settings.data_dir)]
    findings.append(await _database(settings))
    findings.append(await _git())
    findings += await _agents(settings, source)
    findings += _sandbox_tools(source)
    findings += await _dns(settings)
    findings += await _remote_servers(settings)
    return findings


def default_agent_ready(settings: Settings, findings: Sequence[Finding]) -> bool:
    return any(f.ok for f in findings if f.subject == f"agent {settings.default_agent}")


def render(findings: Sequence[Finding], settings: Settings) -> list[str]:
    lines = []
    for f in findings:
        lines.append(f"{'ok  ' if f.ok else 'MISS'}  {f.subject:<22} {f.detail}")
        if not f.ok and f.fix:
            lines.append(f"      {'':<22} fix: {f.fix}")
    if default_agent_ready(settings, findings):
        lines.append(f"the default agent {settings.default_agent!r} can run here")
    else:
        lines.append(
            f"the default agent {settings.default_agent!r} cannot run here: builds that name "
            "no agent will stay pending (fix it above, or set RDEV_DEFAULT_AGENT)"
        )
    return lines


def _data_dir(path: Path) -> Finding:
    path = path.resolve()
    if not path.exists():
        parent = next((p for p in path.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK):
            return Finding("data dir", True, f"{path} (created on the first `rdev serve`)")
        return Finding(
            "data dir",
            False,
            f"{path} does not exist and cannot be created",
            "create it, or set RDEV_DATA_DIR to a writable folder",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".rdev-doctor-"):
            pass
    except OSError as exc:
        return Finding(
            "data dir",
            False,
            f"{path} is not writable ({exc.strerror})",
            "make it writable for this user, or set RDEV_DATA_DIR",
        )
    return Finding("data dir", True, f"{path} (writable)")


async def _database(settings: Settings) -> Finding:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from rdev.adapters.db.engine import Database
    from rdev.adapters.db.migrate import alembic_config

    shown = display_database_url(settings)
    if settings.database_url is None and not settings.data_dir.exists():
        return Finding("database", True, f"{shown} (created on the first `rdev serve`)")
    db = Database(settings.resolved_database_url)
    try:
        async with db.engine.connect() as conn:
            current = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    except Exception as exc:  # noqa: BLE001 - any driver error is the finding
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Finding(
            "database",
            False,
            f"{shown}: cannot connect ({reason[:200]})",
            "start the database, or fix RDEV_DATABASE_URL",
        )
    finally:
        await db.dispose()
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if current == head:
        return Finding("database", True, f"{shown} (migrations current: {head})")
    if current is None:
        return Finding("database", True, f"{shown} (empty: migrated on the first `rdev serve`)")
    return Finding(
        "database",
        False,
        f"{shown}: schema at {current}, this rdev expects {head}",
        "run `rdev migrate` (the server also migrates at start-up)",
    )


async def _version(argv: Sequence[str]) -> tuple[int, str]:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        return 127, exc.strerror or str(exc)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return 124, "no answer within 30 s"
    return proc.returncode or 0, out.decode(errors="replace").strip()


async def _git() -> Finding:
    git = shutil.which("git")
    if git is None:
        return Finding("git", False, "not found on PATH", "install git (e.g. apt-get install git)")
    rc, out = await _version([git, "--version"])
    if rc != 0:
        return Finding("git", False, f"{git} --version failed: {out[:200]}", "reinstall git")
    return Finding("git", True, out.removeprefix("git version ").strip())


async def _agents(settings: Settings, env: Mapping[str, str]) -> list[Finding]:
    agents = build_agents(agent_options(settings), env)
    findings = []
    for a in agent_readiness(settings, env):
        subject = f"agent {a.name}"
        if not a.ready:
            findings.append(Finding(subject, False, a.reason or "not available", a.fix))
            continue
        version = getattr(agents[a.name], "cli_version", None)
        if version is None:  # the command agent: a shell line, nothing to ask
            findings.append(Finding(subject, True, f"runs {settings.command_agent!r}"))
            continue
        found = await version()
        missing_key = a.name == "claude-code" and not _has_any(env, CLAUDE_KEYS)
        if found is not None and missing_key:
            findings.append(
                Finding(
                    subject,
                    False,
                    f"version {found}, but no model API key is set",
                    AGENT_FIXES.get(a.name),
                )
            )
        elif found is None:
            findings.append(
                Finding(
                    subject, False, "the CLI does not answer --version", AGENT_FIXES.get(a.name)
                )
            )
        else:
            findings.append(Finding(subject, True, f"version {found}"))
    return findings


#: Claude Code runs with a private HOME per build, so a login on this machine does not count.
CLAUDE_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def _has_any(env: Mapping[str, str], names: Sequence[str]) -> bool:
    return any(env.get(n) for n in names)


def _sandbox_tools(env: Mapping[str, str]) -> list[Finding]:
    found = {t: shutil.which(t, path=env.get("PATH")) for t in SANDBOX_TOOLS}
    present = ", ".join(f"{t} ({p})" for t, p in found.items() if p)
    detail = present or "none of " + ", ".join(SANDBOX_TOOLS)
    note = "agents run unsandboxed, as the worker's user"
    return [Finding("sandbox tools", True, f"{detail}; {note}")]


async def _dns(settings: Settings) -> list[Finding]:
    if settings.dns_provider == "none":
        return []
    from rdev.domain.hostnames import effective_zones

    where = f"{settings.dns_server}:{settings.dns_port}"
    try:
        provider = dns_provider(settings)
        zones = effective_zones(settings.dns_zones, settings.apps_domain)
        await provider.lookup_cname(f"rdev-doctor-probe.{zones[0]}")
    except Exception as exc:  # noqa: BLE001 - DNS errors are scrubbed, never carry the key
        return [
            Finding(
                "dns",
                False,
                f"{settings.dns_provider} at {where}: {exc}",
                "check RDEV_DNS_SERVER / RDEV_DNS_PORT / RDEV_DNS_TSIG_* (docs/dns.md)",
            )
        ]
    return [Finding("dns", True, f"{settings.dns_provider} at {where} answers")]


async def _remote_servers(settings: Settings) -> list[Finding]:
    """The Gitea repo host and the projects' CI servers, when configured.

    Both ask the server's public version endpoint (no token is sent): Gitea's
    ``/api/v1/version`` and Woodpecker's ``/api/version`` (tests/specs holds the documents).
    """
    targets: list[tuple[str, str, str]] = []
    if settings.repo_host == "gitea" and settings.gitea_url:
        targets.append(
            (
                "repo host gitea",
                settings.gitea_url.rstrip("/") + "/api/v1/version",
                "check RDEV_GITEA_URL",
            )
        )
    for server in await _ci_servers(settings):
        targets.append(
            (
                f"ci {server}",
                server.rstrip("/").removesuffix("/api") + "/api/version",
                "check the project's ci.server_url (PATCH /projects/{id})",
            )
        )
    findings = []
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        for subject, url, fix in targets:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                findings.append(Finding(subject, False, f"unreachable ({type(exc).__name__})", fix))
                continue
            version = _version_field(response)
            if version is None:
                detail = f"answers HTTP {response.status_code} at {url}, but no version"
                findings.append(Finding(subject, False, detail, fix))
            else:
                findings.append(Finding(subject, True, f"version {version}"))
    return findings


def _version_field(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    version = body.get("version") if isinstance(body, dict) else None
    return str(version) if version else None


async def _ci_servers(settings: Settings) -> list[str]:
    """Distinct CI server URLs of the projects in the database (none if it is unreachable)."""
    from rdev.adapters.db.engine import Database
    from rdev.adapters.db.tables import projects

    if settings.database_url is None and not (settings.data_dir / "rdev.db").exists():
        return []
    db = Database(settings.resolved_database_url)
    try:
        async with db.engine.connect() as conn:
            rows = (await conn.execute(projects.select())).mappings().all()
    except Exception:  # noqa: BLE001 - the database finding already says why
        return []
    finally:
        await db.dispose()
    servers = set()
    for row in rows:
        ci = (row["settings"] or {}).get("ci") or {}
        if ci.get("provider", "none") != "none" and ci.get("server_url"):
            servers.add(str(ci["server_url"]))
    return sorted(servers)
