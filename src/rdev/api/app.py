"""The FastAPI application factory."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from rdev import __version__
from rdev.api.problems import install_problem_handlers
from rdev.api.routers import (
    builds,
    create_and_build,
    deliveries,
    health,
    hostnames,
    logs,
    pipelines,
    projects,
    templates,
    tokens,
    workers,
)
from rdev.api.watching import install_watching
from rdev.bootstrap import Container, build_container
from rdev.config import Settings

log = structlog.get_logger("rdev.http")


class RequestContext:
    """Pure ASGI middleware: a request id per request, bound into every log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = dict(scope["headers"]).get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=rid)
        path = scope.get("path", "")
        for marker in ("/builds/", "/complete/"):
            if marker in path:
                structlog.contextvars.bind_contextvars(task_id=path.split(marker)[1].split("/")[0])
        if path.startswith("/workers/") and path.count("/") >= 3:
            structlog.contextvars.bind_contextvars(worker_id=path.split("/")[2])
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):  # type: ignore[no-untyped-def]
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if status >= 400 or path not in ("/healthz", "/readyz"):  # probes: quiet
                log.info(
                    "request",
                    method=scope.get("method"),
                    path=path,
                    status=status,
                    ms=round((time.perf_counter() - start) * 1000, 1),
                )


def create_app(settings: Settings | None = None, container: Container | None = None) -> FastAPI:
    settings = settings or Settings()
    container = container or build_container(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await container.start()
        for hook in app.state.startup_hooks:
            await hook(container)
        try:
            yield
        finally:
            for hook in app.state.shutdown_hooks:
                await hook(container)
            await container.stop()

    app = FastAPI(
        title="rdev",
        version=__version__,
        description="Self-hosted build orchestration for bot-driven development.",
        lifespan=lifespan,
    )
    app.state.container = container
    app.state.startup_hooks = []
    app.state.shutdown_hooks = []
    install_problem_handlers(app)
    for r in (
        health,
        projects,
        builds,
        logs,
        workers,
        tokens,
        hostnames,  # /projects/{id}/domains and /domains
        deliveries,
        pipelines,
        templates,
        create_and_build,
    ):
        app.include_router(r.router)
    if container.git_http is not None:
        app.mount("/git", container.git_http)  # local repositories over git smart HTTP
    install_watching(app, container)  # /metrics, /ui, request metrics, live-log wake-ups
    app.add_middleware(RequestContext)
    return app
