"""Plugs the 'watching builds' features into the app: metrics, live-stream wake-ups, UI.

``install_watching(app, container)`` adds one pure ASGI middleware that, per request,
counts it by route template and status code, and — after a successful write that can
change a build's log or status (log append, claim, completion, cancel) — wakes the live
log streams of this process. It also includes the /metrics and /ui routers.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: (method, route template) of writes after which live streams should look again.
WAKE_ROUTES = frozenset(
    {
        ("POST", "/builds/{task_id}/logs"),
        ("POST", "/builds/{task_id}/cancel"),
        ("POST", "/workers/{worker_id}/claim"),
        ("POST", "/workers/{worker_id}/complete/{task_id}"),
        ("POST", "/ui/builds/{task_id}/cancel"),
    }
)


def route_template(scope: Scope) -> str:
    """The matched route's path template (never the raw path: ids would explode labels)."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    return str(path) if path else "unmatched"


class ObserveRequests:
    def __init__(self, app: ASGIApp, container: Any) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # The write is committed before the response starts: wake streams now.
                if status < 400 and (scope["method"], route_template(scope)) in WAKE_ROUTES:
                    live = getattr(self.container, "live", None)
                    if live is not None:
                        live.wake()
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            metrics = getattr(self.container, "metrics", None)
            if metrics is not None:
                metrics.observe_request(scope["method"], route_template(scope), status)


def install_watching(app: FastAPI, container: Any) -> None:
    from rdev.api.routers import metrics, ui

    app.include_router(metrics.router)
    ui.install(app)
    app.add_middleware(ObserveRequests, container=container)
