"""The web dashboard at /ui: server-rendered pages (Jinja2, autoescaped) + a little JS.

Sign-in: the API token is POSTed once to /ui/login and kept in an HttpOnly,
SameSite=Strict cookie scoped to /ui (never in a URL, never readable by scripts). Every
/ui request authenticates that cookie exactly like a bearer token; form POSTs also carry
a CSRF token derived from it. Pages send a strict Content-Security-Policy (scripts and
styles only from /ui/static, no inline code), and everything a bot or an agent wrote is
escaped by the template engine (and set with textContent by the JS).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, FastAPI, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from rdev.api.deps import ContainerDep
from rdev.api.routers.logs import resume_point, stream_response
from rdev.domain.auth import Principal
from rdev.domain.errors import DomainError, Unauthorized
from rdev.domain.models import Build, BuildStatus

if TYPE_CHECKING:
    from rdev.bootstrap import Container

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
COOKIE = "rdev_ui_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make form POSTs send Origin: null
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATUSES = [s.value for s in BuildStatus]

router = APIRouter(prefix="/ui", include_in_schema=False)
env = Environment(
    loader=FileSystemLoader(UI_DIR / "templates"), autoescape=True, undefined=StrictUndefined
)
env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
env.filters["short"] = lambda v, n=12: (v or "")[:n]


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=UI_DIR / "static"), name="ui-static")


# -- sessions ---------------------------------------------------------------------------------
def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"rdev-ui-csrf", hashlib.sha256).hexdigest()[:32]


async def signed_in(request: Request, c: Any) -> tuple[Principal, str] | None:
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return await c.tokens.authenticate(token), token
    except Unauthorized:
        return None


async def form(request: Request) -> dict[str, str]:
    body = (await request.body())[:65536].decode(errors="replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


def page(name: str, http_status: int = 200, **ctx: Any) -> HTMLResponse:
    html = env.get_template(name).render(**ctx)
    return HTMLResponse(html, status_code=http_status, headers=SECURITY_HEADERS)


def to_login() -> RedirectResponse:
    r = RedirectResponse("/ui/login", status_code=303)
    r.delete_cookie(COOKIE, path="/ui")
    return r


def error_page(exc: DomainError, session: tuple[Principal, str] | None) -> Response:
    if isinstance(exc, Unauthorized):
        return to_login()
    return page(
        "error.html",
        http_status=exc.status,
        detail=exc.detail,
        title=exc.code,
        who=session[0].name if session else None,
        csrf=csrf_for(session[1]) if session else "",
    )


# -- sign in / out ----------------------------------------------------------------------------
@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return RedirectResponse("/ui/builds", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form() -> Response:
    return page("login.html", who=None, error=None, csrf="")


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, c: ContainerDep) -> Response:
    if not same_origin(request):
        return page(
            "login.html", http_status=403, who=None, csrf="", error="cross-site sign-in refused"
        )
    token = (await form(request)).get("token", "").strip()
    try:
        await c.tokens.authenticate(token)
    except Unauthorized:
        return page(
            "login.html", http_status=401, who=None, csrf="", error="That token was not accepted."
        )
    r = RedirectResponse("/ui/builds", status_code=303)
    r.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        path="/ui",
        secure=request.url.scheme == "https",
    )
    return r


@router.post("/logout")
async def logout(request: Request, c: ContainerDep) -> Response:
    return to_login()


# -- builds -----------------------------------------------------------------------------------
async def _builds(
    c: Container, p: Principal, status: str | None, project: str | None
) -> list[Build]:
    statuses = [status] if status in STATUSES else None
    items, _ = await c.builds.list(p, project or None, statuses, 100, None)
    return items


@router.get("/builds", response_class=HTMLResponse)
async def builds_page(
    request: Request, c: ContainerDep, status: str | None = None, project: str | None = None
) -> Response:
    session = await signed_in(request, c)
    if session is None:
        return to_login()
    try:
        items = await _builds(c, session[0], status, project)
    except DomainError as exc:
        return error_page(exc, session)
    query = urlencode({k: v for k, v in (("status", status), ("project", project)) if v})
    return page(
        "builds.html",
        builds=items,
        statuses=STATUSES,
        status=status or "",
        project=project or "",
        rows_url="/ui/builds/rows" + (f"?{query}" if query else ""),
        who=session[0].name,
        csrf=csrf_for(session[1]),
    )


@router.get("/builds/rows", response_class=HTMLResponse)
async def builds_rows(
    request: Request, c: ContainerDep, status: str | None = None, project: str | None = None
) -> Response:
    """The table body alone, for the list's auto-refresh."""
    session = await signed_in(request, c)
    if session is None:
        return Response(status_code=401)
    try:
        items = await _builds(c, session[0], status, project)
    except DomainError as exc:
        return Response(status_code=exc.status)
    return page("_builds_rows.html", builds=items)


@router.get("/builds/{task_id}", response_class=HTMLResponse)
async def build_page(task_id: str, request: Request, c: ContainerDep) -> Response:
    session = await signed_in(request, c)
    if session is None:
        return to_login()
    p = session[0]
    try:
        build = await c.builds.get(p, task_id)
        events = await c.builds.events(p, task_id)
    except DomainError as exc:
        return error_page(exc, session)
    return page(
        "build.html",
        build=build,
        events=events,
        spec=build.spec.model_dump(mode="json", exclude_defaults=True),
        may_cancel=not build.status.is_final and p.has("builds:write"),
        who=p.name,
        csrf=csrf_for(session[1]),
    )


@router.get("/builds/{task_id}/events", response_model=None)
async def build_live(
    task_id: str,
    request: Request,
    c: ContainerDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    """The build's live log (SSE, the same stream as GET /builds/{id}/logs) for the page."""
    session = await signed_in(request, c)
    if session is None:
        return Response(status_code=401)
    try:
        return await stream_response(c, session[0], task_id, resume_point(last_event_id, 0))
    except DomainError as exc:
        return Response(status_code=exc.status)


@router.post("/builds/{task_id}/cancel")
async def cancel(task_id: str, request: Request, c: ContainerDep) -> Response:
    session = await signed_in(request, c)
    if session is None:
        return to_login()
    sent = (await form(request)).get("csrf", "")
    if not same_origin(request) or not hmac.compare_digest(sent, csrf_for(session[1])):
        return page(
            "error.html",
            http_status=403,
            title="Forbidden",
            detail="bad form token",
            who=session[0].name,
            csrf=csrf_for(session[1]),
        )
    try:
        await c.builds.cancel(session[0], task_id)
    except DomainError as exc:
        return error_page(exc, session)
    return RedirectResponse(f"/ui/builds/{task_id}", status_code=303)


# -- workers and projects ---------------------------------------------------------------------
@router.get("/workers", response_class=HTMLResponse)
async def workers_page(request: Request, c: ContainerDep) -> Response:
    session = await signed_in(request, c)
    if session is None:
        return to_login()
    try:
        workers = await c.workers.list(session[0])
    except DomainError as exc:
        return error_page(exc, session)
    return page("workers.html", workers=workers, who=session[0].name, csrf=csrf_for(session[1]))


@router.get("/projects", response_class=HTMLResponse)
async def projects_page(request: Request, c: ContainerDep) -> Response:
    session = await signed_in(request, c)
    if session is None:
        return to_login()
    try:
        projects = await c.projects.list(session[0])
    except DomainError as exc:
        return error_page(exc, session)
    return page("projects.html", projects=projects, who=session[0].name, csrf=csrf_for(session[1]))
