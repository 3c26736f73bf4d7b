"""The API client commands of ``rdev``: login, build, builds, projects, workers.

Exit codes: 0 success (for a watched build: it completed successfully); 1 a watched build
failed or was cancelled; 2 the command could not be carried out (server unreachable,
401/403/404, invalid input); 130 interrupted. Errors are one line on stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.live import Live
from rich.text import Text

from rdev.client import render
from rdev.client.api import ApiClient
from rdev.client.config import (
    ClientError,
    Connection,
    config_path,
    load_file,
    normalise_server,
    resolve,
    save_file,
)

F = TypeVar("F", bound=Callable[..., Any])

ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="RDEV_SERVER",
        show_envvar=True,
        help="Server URL (default: from `rdev login`).",
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="RDEV_TOKEN",
        show_envvar=True,
        show_default=False,
        help="API token (default: from `rdev login`).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout, for scripts.")]

build_app = typer.Typer(help="Submit, watch, inspect and cancel builds.", no_args_is_help=True)
builds_app = typer.Typer(help="List builds.", no_args_is_help=True)
projects_app = typer.Typer(help="List and create projects.", no_args_is_help=True)
workers_app = typer.Typer(help="List workers.", no_args_is_help=True)


def register_client_commands(app: typer.Typer) -> None:
    """Attach the client commands to the ``rdev`` Typer app."""
    app.command("login")(login)
    app.add_typer(build_app, name="build")
    app.add_typer(builds_app, name="builds")
    app.add_typer(projects_app, name="projects")
    app.add_typer(workers_app, name="workers")


def one_line_errors(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ClientError as exc:
            stderr_console().print(Text(f"error: {exc.message}", style="red"))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            stderr_console().print("interrupted (a submitted build keeps running)")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def stderr_console() -> Console:
    return Console(stderr=True, soft_wrap=True)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def api_for(server: str | None, token: str | None) -> ApiClient:
    return ApiClient(resolve(server, token))


# -- login ------------------------------------------------------------------------------
@one_line_errors
def login(server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Check a server URL and token, then save them (mode 600) for the other commands."""
    saved = load_file()
    server = server or typer.prompt(
        "Server URL", default=saved.get("server") or "http://127.0.0.1:8080"
    )
    token = token or typer.prompt("API token", hide_input=True)
    conn = Connection(normalise_server(server), token.strip())
    with ApiClient(conn) as api:
        api.get("/healthz")
        try:
            api.get("/workers")  # any builds:read or workers:run token may read this
        except ClientError as exc:
            if exc.status != 403:  # 403: a valid token with other scopes is fine
                raise
    path = save_file(conn.server, conn.token)
    stderr_console().print(f"logged in to {conn.server}; saved to {path}")


# -- builds -----------------------------------------------------------------------------
def parse_vars(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ClientError(f"--var wants KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def succeeded(build: dict[str, Any]) -> bool:
    return build.get("status") == "completed" and bool((build.get("result") or {}).get("success"))


def watch(api: ApiClient, build: dict[str, Any], as_json: bool, since: int = 0) -> int:
    """Show the live log and status until the build ends; the exit code for the outcome."""
    task_id = build["task_id"]
    out, err = Console(), stderr_console()
    line = render.StatusLine(task_id, build.get("created_at"))
    line.update(build)
    if as_json:
        final = api.follow(task_id, since=since, on_log=lambda c: None, on_status=lambda d: None)
        emit_json(final)
    elif out.is_terminal:
        with Live(line, console=out, refresh_per_second=4, transient=True) as live:
            final = api.follow(
                task_id,
                since=since,
                on_log=lambda c: render.print_log(live.console, c),
                on_status=line.update,
            )
        out.print(render.final_line(final))
    else:

        def status(d: dict[str, Any]) -> None:
            line.update(d)
            err.print(line.__rich__(), markup=False, highlight=False)

        final = api.follow(
            task_id, since=since, on_log=lambda c: render.print_log(out, c), on_status=status
        )
        err.print(render.final_line(final))
    return 0 if succeeded(final) else 1


@build_app.command("submit")
@one_line_errors
def build_submit(
    project: Annotated[str, typer.Argument(help="Project id or name.")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="What to do.")] = None,
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the prompt from a file ('-': stdin).")
    ] = None,
    template: Annotated[str | None, typer.Option("--template", "-t", help="Template.")] = None,
    var: Annotated[
        list[str] | None, typer.Option("--var", help="Template variable KEY=VALUE; repeatable.")
    ] = None,
    auto_commit: Annotated[bool, typer.Option("--auto-commit", help="Commit changes.")] = False,
    auto_push: Annotated[bool, typer.Option("--auto-push", help="Push the commit.")] = False,
    agent: Annotated[str | None, typer.Option(help="Code agent.")] = None,
    model: Annotated[str | None, typer.Option(help="Model for the agent.")] = None,
    branch: Annotated[str | None, typer.Option(help="Branch (default: the project's).")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Worker label required; repeatable.")
    ] = None,
    callback_url: Annotated[str | None, typer.Option(help="Webhook URL for results.")] = None,
    timeout: Annotated[int | None, typer.Option(help="Build timeout in seconds.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retry-safe submit: the same key returns the same build.")
    ] = None,
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="Follow the log until the build ends.")
    ] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue a build; with --watch, follow it and exit 0 only if it completed successfully."""
    if prompt_file is not None:
        text = sys.stdin.read() if str(prompt_file) == "-" else _read(prompt_file)
        prompt = text
    if not prompt or not prompt.strip():
        raise ClientError("a prompt is required: --prompt TEXT or --prompt-file PATH")
    body: dict[str, Any] = {
        "prompt": prompt,
        "auto_commit": auto_commit or auto_push,
        "auto_push": auto_push,
    }
    optional = {
        "template": template,
        "agent": agent,
        "model": model,
        "branch": branch,
        "callback_url": callback_url,
        "timeout_seconds": timeout,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if var:
        body["variables"] = parse_vars(var)
    if label:
        body["labels"] = label
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with api_for(server, token) as api:
        accepted = api.post(f"/projects/{project}/builds", json=body, headers=headers)
        task_id = accepted["task_id"]
        if not watch_:
            if as_json:
                emit_json(accepted)
            else:
                Console().print(
                    f"submitted build {task_id} ({accepted['status']})",
                    markup=False,
                    highlight=False,
                )
            return
        if not as_json:
            stderr_console().print(
                f"submitted build {task_id}; following its log", markup=False, highlight=False
            )
        code = watch(api, api.get(f"/builds/{task_id}"), as_json)
    raise typer.Exit(code)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None


@build_app.command("show")
@one_line_errors
def build_show(
    task_id: Annotated[str, typer.Argument(help="Build task id.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Status, spec, result and audit trail of one build."""
    with api_for(server, token) as api:
        build = api.get(f"/builds/{task_id}")
        events = api.get(f"/builds/{task_id}/events")
    if as_json:
        emit_json({**build, "events": events})
        return
    out = Console()
    out.print(render.build_details(build))
    if events:
        out.print()
        for e in events:
            who = render.safe(e.get("actor"))
            why = render.safe(e.get("reason") or "")
            out.print(
                Text(
                    f"  {render.safe(e.get('at'))}  {e.get('from') or '-'} → "
                    f"{e.get('to')}  {who}  {why}"
                )
            )


@build_app.command("logs")
@one_line_errors
def build_logs(
    task_id: Annotated[str, typer.Argument(help="Build task id.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming until the build ends.")
    ] = False,
    since: Annotated[int, typer.Option(help="Only chunks after this sequence number.")] = 0,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a build's log; with --follow, live until it ends (exit code as --watch)."""
    with api_for(server, token) as api:
        if follow:
            build = api.get(f"/builds/{task_id}")
            if as_json:
                chunks: list[dict[str, Any]] = []
                final = api.follow(
                    task_id, since=since, on_log=chunks.append, on_status=lambda d: None
                )
                emit_json({"task_id": task_id, "chunks": chunks, "build": final})
                raise typer.Exit(0 if succeeded(final) else 1)
            raise typer.Exit(watch(api, build, False, since=since))
        chunks, last = [], since
        while True:
            page = api.get(f"/builds/{task_id}/logs", params={"since": last})
            if not page["chunks"]:
                break
            chunks.extend(page["chunks"])
            last = page["last_seq"]
    if as_json:
        emit_json({"task_id": task_id, "chunks": chunks, "last_seq": last})
        return
    out = Console()
    for chunk in chunks:
        render.print_log(out, chunk)


@build_app.command("cancel")
@one_line_errors
def build_cancel(
    task_id: Annotated[str, typer.Argument(help="Build task id.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cancel a build: at once if pending; a running one stops within seconds."""
    with api_for(server, token) as api:
        build = api.post(f"/builds/{task_id}/cancel")
    if as_json:
        emit_json(build)
        return
    state = "cancel requested" if build["status"] == "running" else build["status"]
    Console().print(f"build {task_id}: {state}", markup=False, highlight=False)


@builds_app.command("list")
@one_line_errors
def builds_list(
    project: Annotated[str | None, typer.Option("--project", help="Project id or name.")] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", help="Only this status; repeatable.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many (newest first).")] = 20,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Builds, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if project:
        params["project"] = project
    if status:
        params["status"] = status
    with api_for(server, token) as api:
        page = api.get("/builds", params=params)
    if as_json:
        emit_json(page)
        return
    out = Console()
    if not page["items"]:
        out.print("no builds")
        return
    out.print(render.builds_table(page["items"]))


# -- projects and workers ------------------------------------------------------------------
def show_list(
    server: str | None,
    token: str | None,
    as_json: bool,
    path: str,
    table: Callable[[list[dict[str, Any]]], Any],
    empty: str,
) -> None:
    """GET a list and print it: JSON for scripts, a table (or ``empty``) for people."""
    with api_for(server, token) as api:
        items = api.get(path)
    if as_json:
        emit_json(items)
        return
    Console().print(table(items) if items else empty)


@projects_app.command("list")
@one_line_errors
def projects_list(
    server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Projects this token may see."""
    show_list(server, token, as_json, "/projects", render.projects_table, "no projects")


@projects_app.command("create")
@one_line_errors
def projects_create(
    name: Annotated[str, typer.Argument(help="Project name.")],
    repo_url: Annotated[str, typer.Option("--repo-url", help="Git repository URL.")],
    default_branch: Annotated[str, typer.Option(help="Default branch.")] = "main",
    default_agent: Annotated[str | None, typer.Option(help="Default code agent.")] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", help="Worker label; repeatable.")
    ] = None,
    git_credential_env: Annotated[
        str | None,
        typer.Option(
            help="Name of an environment variable holding the repo credential "
            "(kept off the command line)."
        ),
    ] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a git repository as a project."""
    import os

    body: dict[str, Any] = {
        "name": name,
        "repo_url": repo_url,
        "default_branch": default_branch,
        "labels": label or [],
    }
    if default_agent:
        body["default_agent"] = default_agent
    if git_credential_env:
        cred = os.environ.get(git_credential_env)
        if not cred:
            raise ClientError(f"environment variable {git_credential_env} is not set")
        body["git_credential"] = cred
    with api_for(server, token) as api:
        project = api.post("/projects", json=body)
    if as_json:
        emit_json(project)
        return
    Console().print(
        f"created project {render.safe(project['name'])} ({project['id']})",
        markup=False,
        highlight=False,
    )


@workers_app.command("list")
@one_line_errors
def workers_list(
    server: ServerOpt = None, token: TokenOpt = None, as_json: JsonOpt = False
) -> None:
    """Workers with their online state and current builds."""
    show_list(server, token, as_json, "/workers", render.workers_table, "no workers registered")


__all__ = ["config_path", "register_client_commands"]
