"""Running the API server: uvicorn, the embedded worker, and an orderly shutdown.

On SIGTERM/SIGINT the embedded worker stops first (it stops claiming, lets running builds
finish within the grace period, cancels the rest and reports them over HTTP while the
server still answers); then long-polling claims of other workers are released at once and
uvicorn drains and stops. A second signal skips the wait.
"""

from __future__ import annotations

import asyncio
import gc
import socket
from types import FrameType
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from rdev.bootstrap import Container, build_worker
from rdev.config import Settings

log = structlog.get_logger(__name__)

EMBEDDED_WORKER_TOKEN_NAME = "embedded-worker"  # noqa: S105 - a name, not a secret


class RdevServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, container: Container) -> None:
        super().__init__(config)
        self.container = container
        self._stopping = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        worker = self.container.embedded_worker
        if self._stopping or worker is None or worker.done():
            self._release_and_exit(sig, frame)
            return
        self._stopping = True
        loop = asyncio.get_event_loop()
        loop.call_soon_threadsafe(lambda: loop.create_task(self._stop_worker_then_exit(sig, frame)))

    async def _stop_worker_then_exit(self, sig: int, frame: FrameType | None) -> None:
        worker = self.container.embedded_worker
        assert worker is not None
        log.info("stopping the embedded worker before the server")
        self.container.embedded_worker_stop.set()
        grace = self.container.settings.shutdown_grace_seconds
        await asyncio.wait({worker}, timeout=grace + 30)
        self._release_and_exit(sig, frame)

    def _release_and_exit(self, sig: int, frame: FrameType | None) -> None:
        self.container.workers.drain()  # waiting claims answer "nothing" now
        super().handle_exit(sig, frame)


def run_server(app: FastAPI, settings: Settings) -> None:
    container: Container = app.state.container
    app.state.startup_hooks.append(print_startup_summary)
    if settings.embedded_worker:
        app.state.startup_hooks.append(start_embedded_worker)
    app.state.startup_hooks.append(freeze_startup_objects)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    RdevServer(config, container).run()


def server_url(settings: Settings) -> str:
    """Where this server's own processes (and the person who started it) reach it."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return settings.public_url or f"http://{host}:{settings.port}"


async def print_startup_summary(container: Container) -> None:
    """A few lines a person reads once: URL, data, admin token (first start), agents."""
    from rdev.doctor import startup_summary

    summary = startup_summary(
        container.settings, server_url(container.settings), container.bootstrap_token
    )
    print(summary, flush=True)  # noqa: T201 - for the operator's terminal, on purpose


async def freeze_startup_objects(container: Container) -> None:
    """Keep what start-up built out of the garbage collector's full passes.

    The app, its routes, schemas and caches live as long as the process. Without this,
    every full collection walks them all again (tens of milliseconds), a pause that lands
    on whichever request happened to allocate at that moment.
    """
    gc.collect()
    gc.freeze()


async def start_embedded_worker(container: Container) -> None:
    """Start one worker in this process; it talks to this server over HTTP like any other."""
    s = container.settings
    await container.tokens.revoke_named(EMBEDDED_WORKER_TOKEN_NAME)
    _, token = await container.tokens.create(EMBEDDED_WORKER_TOKEN_NAME, ["workers:run"])
    server = server_url(s)
    daemon: Any = build_worker(
        s, server=server, token=token, name=f"embedded-{socket.gethostname()}"
    )
    container.embedded_worker = asyncio.create_task(
        daemon.run(container.embedded_worker_stop), name="rdev-embedded-worker"
    )
    container.background.append(container.embedded_worker)
