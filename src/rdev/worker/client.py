"""HTTP client for the worker protocol, with retries for network errors and 5xx answers."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, TypeAdapter, ValidationError

from rdev.domain.models import BuildResult, ClaimedTask

log = structlog.get_logger(__name__)

T = TypeVar("T")


class Registered(BaseModel):
    """The server's answer to a registration: our id, and how often to prove we live."""

    worker_id: str
    lease_seconds: float
    heartbeat_interval_seconds: float


class HeartbeatAnswer(BaseModel):
    """The new lease expiry per task, and the tasks whose builds were asked to cancel."""

    leases: dict[str, datetime]
    cancel: list[str]


# The answers are checked when they arrive, so a wrong one fails here, not deep in the loop.
_REGISTERED = TypeAdapter(Registered)
_HEARTBEAT = TypeAdapter(HeartbeatAnswer)
_CLAIMED = TypeAdapter(list[ClaimedTask])


def _answer(adapter: TypeAdapter[T], data: Any, path: str) -> T:
    """``data`` as the worker protocol's answer; one that is not is a ProtocolError."""
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(f"{path}: not a worker protocol answer: {exc}") from None


class LeaseLost(Exception):
    """The server answered 409: the lease on these tasks is no longer ours."""

    def __init__(self, tasks: list[str]) -> None:
        super().__init__(f"lease lost on {tasks}")
        self.tasks = tasks


class ServerUnavailable(Exception):
    """The server could not be reached (or answered 5xx) within the retry budget."""


class ProtocolError(Exception):
    """The server refused the request (4xx other than 409), or its answer was not one the
    worker protocol allows."""


class WorkerClient:
    def __init__(self, server: str, token: str, *, timeout: float = 30.0) -> None:
        self.server = server.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.server,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "rdev-worker"},
            timeout=httpx.Timeout(timeout, connect=5.0),
        )
        self.worker_id: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        path: str,
        body: Any,
        *,
        read_timeout: float | None = None,
        retry_for: float = 0.0,
    ) -> Any:
        """POST with retries (backoff with jitter) until ``retry_for`` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + retry_for
        delay = 0.2
        while True:
            try:
                timeout = httpx.Timeout(read_timeout + 10, connect=5.0) if read_timeout else None
                kwargs: dict[str, Any] = {"json": body}
                if timeout:
                    kwargs["timeout"] = timeout
                r = await self._http.post(path, **kwargs)
                if r.status_code == 409:
                    data = _json(r)
                    raise LeaseLost(data.get("lost_tasks") or [path])
                if r.status_code >= 500 or r.status_code == 429:
                    raise ServerUnavailable(f"server answered {r.status_code}")
                if r.status_code >= 400:
                    raise ProtocolError(f"{r.status_code}: {_json(r).get('detail', r.text[:200])}")
                return _json(r) if r.content else None
            except (httpx.TransportError, ServerUnavailable) as exc:
                if loop.time() + delay > deadline:
                    raise ServerUnavailable(str(exc) or type(exc).__name__) from exc
                log.warning(
                    "server call failed; retrying",
                    path=path,
                    error=str(exc) or type(exc).__name__,
                    retry_in=round(delay, 2),
                )
                await asyncio.sleep(delay * (0.8 + random.random() * 0.4))
                delay = min(delay * 2, 5.0)

    async def register(self, info: dict[str, Any], retry_for: float) -> Registered:
        path = "/workers/register"
        data = _answer(_REGISTERED, await self._call(path, info, retry_for=retry_for), path)
        self.worker_id = data.worker_id
        return data

    async def heartbeat(self, tasks: dict[str, str]) -> HeartbeatAnswer:
        path = f"/workers/{self.worker_id}/heartbeat"
        body = {"tasks": [{"task_id": t, "lease_token": tok} for t, tok in tasks.items()]}
        return _answer(_HEARTBEAT, await self._call(path, body, retry_for=5.0), path)

    async def claim(self, max_tasks: int, wait_seconds: float) -> list[ClaimedTask]:
        path = f"/workers/{self.worker_id}/claim"
        data = await self._call(
            path, {"max_tasks": max_tasks, "wait_seconds": wait_seconds}, read_timeout=wait_seconds
        )
        return _answer(_CLAIMED, data or [], path)

    async def append_logs(
        self,
        task_id: str,
        lease_token: str,
        chunks: list[dict[str, str]],
        retry_for: float,
        offset: int | None = None,
    ) -> None:
        await self._call(
            f"/builds/{task_id}/logs",
            {"lease_token": lease_token, "chunks": chunks, "offset": offset},
            retry_for=retry_for,
        )

    async def complete(
        self,
        task_id: str,
        lease_token: str,
        result: BuildResult,
        agent_info: dict[str, Any],
        retry_for: float,
    ) -> str:
        data = await self._call(
            f"/workers/{self.worker_id}/complete/{task_id}",
            {
                "lease_token": lease_token,
                "result": result.model_dump(mode="json"),
                "agent_info": agent_info,
            },
            retry_for=retry_for,
        )
        return str(data["status"])

    async def stopped(self) -> None:
        try:
            await self._call(f"/workers/{self.worker_id}/stopped", {}, retry_for=2.0)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.warning("could not report worker stop", error=str(exc))


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return {}
