"""The ``rdev`` command: server, worker, admin commands (and the API client commands)."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rdev.client.commands import register_client_commands
from rdev.config import Settings
from rdev.logging import configure_logging

app = typer.Typer(
    help="rdev: build orchestration for bot-driven development.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
token_app = typer.Typer(help="Manage API tokens (direct database access).", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _settings(**over: Any) -> Settings:
    return Settings(**{k: v for k, v in over.items() if v is not None})


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    embedded_worker: Annotated[
        bool | None,
        typer.Option(
            "--embedded-worker/--no-embedded-worker",
            help="Run one worker in this process (default: RDEV_EMBEDDED_WORKER, on).",
        ),
    ] = None,
) -> None:
    """Run the API server (migrations applied at start-up) with its background loops."""
    from rdev.api.app import create_app
    from rdev.server import run_server

    settings = _settings(host=host, port=port, embedded_worker=embedded_worker)
    configure_logging(settings.log_level, settings.log_format)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    run_server(create_app(settings), settings)


# ``rdev domains``: the command keeps the API's name; in code the feature is "hostnames".
hostnames_app = typer.Typer(help="DNS aliases of projects.", no_args_is_help=True)
app.add_typer(hostnames_app, name="domains")


@hostnames_app.command("reconcile")
def hostnames_reconcile(
    fix: Annotated[bool, typer.Option("--fix", help="Repair the drift found.")] = False,
) -> None:
    """Compare the aliases in the database with DNS; report drift and optionally repair it."""
    from rdev.hostnames_cli import reconcile_command

    raise typer.Exit(asyncio.run(reconcile_command(_settings(), fix)))


@app.command()
def migrate() -> None:
    """Apply database migrations and exit."""
    from rdev.bootstrap import migrate_database

    asyncio.run(migrate_database(_settings()))
    typer.echo("database is up to date")


@app.command()
def doctor() -> None:
    """Check this machine: database, data dir, git, agent CLIs, sandbox tools, DNS and CI.

    Prints what is missing and how to fix it; exits 1 when the default agent cannot run.
    """
    from rdev.doctor import default_agent_ready, render, run_checks

    settings = _settings()
    findings = asyncio.run(run_checks(settings))
    for line in render(findings, settings):
        typer.echo(line)
    raise typer.Exit(0 if default_agent_ready(settings, findings) else 1)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="A name for the token.")],
    scope: Annotated[list[str], typer.Option(help="A scope; repeat for several.")],
    project: Annotated[
        list[str] | None, typer.Option(help="Limit to a project (id or name); repeatable.")
    ] = None,
) -> None:
    """Mint an API token; it is printed once and stored only as a hash."""
    from rdev.bootstrap import build_container
    from rdev.domain.errors import DomainError

    async def run() -> str:
        c = build_container(_settings())
        await c.start(background=False)
        try:
            _, token = await c.tokens.create(name, scope, project or None)
            return token
        finally:
            await c.stop()

    try:
        typer.echo(asyncio.run(run()))
    except DomainError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None


@app.command()
def worker(
    ctx: typer.Context,
    server: Annotated[str, typer.Option(envvar="RDEV_SERVER", help="Server URL.")],
    token: Annotated[
        str | None,
        typer.Option(
            envvar="RDEV_TOKEN",
            help="Token with workers:run. Prefer RDEV_TOKEN or --token-file: a command-line "
            "argument is visible to every process on the machine (ps).",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(envvar="RDEV_TOKEN_FILE", help="File holding the workers:run token."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Worker name (default: hostname).")] = None,
    slots: Annotated[int | None, typer.Option(help="Builds run at once.")] = None,
    labels: Annotated[str, typer.Option(help="Comma-separated routing labels.")] = "",
    workdir: Annotated[Path | None, typer.Option(help="Where build workdirs go.")] = None,
) -> None:
    """Run a worker daemon: claim builds from SERVER and run them."""
    from rdev.bootstrap import build_worker

    if token_file is not None:
        token = token_file.read_text().strip()
    elif token and getattr(ctx.get_parameter_source("token"), "name", "") == "COMMANDLINE":
        typer.echo(
            "warning: --token on the command line is visible to every process on this "
            "machine (ps); use RDEV_TOKEN or --token-file",
            err=True,
        )
    if not token:
        typer.echo("error: a workers:run token is needed: RDEV_TOKEN or --token-file", err=True)
        raise typer.Exit(2)

    settings = _settings(worker_workdir=workdir)
    configure_logging(settings.log_level, settings.log_format)
    daemon = build_worker(
        settings,
        server=server,
        token=token,
        name=name or socket.gethostname(),
        slots=slots,
        labels=[x.strip() for x in labels.split(",") if x.strip()],
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await daemon.run(stop)
        finally:
            await daemon.client.aclose()

    asyncio.run(run())


register_client_commands(app)  # login, build, builds, projects, workers (API client)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
