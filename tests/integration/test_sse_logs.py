"""Live build logs over Server-Sent Events: order, final status, resume by Last-Event-ID.

The stream is read through a small streaming ASGI driver (httpx's ASGITransport buffers a
whole response, which would hide whether chunks arrive live); the worker protocol is
driven through the API with the ``client`` fixture: register, claim, append, complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rdev.api.app import create_app
from rdev.bootstrap import Container, build_container
from rdev.client.sse import SseEvent, SseParser
from tests.conftest import ADMIN_TOKEN
from tests.factories import create_project, register_worker, submit

#: How long a live event may take to arrive; only a failure waits this long (a loaded
#: machine is slow, never this slow).
STEP = 60.0


class AsgiEventStream:
    """GET an SSE endpoint on an ASGI app and read its events as they are sent."""

    def __init__(self, app: Any, path: str, headers: dict[str, str] | None = None) -> None:
        self.app, self.path = app, path
        self.headers = {
            "authorization": f"Bearer {ADMIN_TOKEN}",
            "accept": "text/event-stream",
            **(headers or {}),
        }
        self.status = 0
        self.ended = asyncio.Event()
        self._started = asyncio.Event()
        self._body: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._parser = SseParser()
        self._pending: list[SseEvent] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> AsgiEventStream:
        path, _, query = self.path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.encode(), v.encode()) for k, v in self.headers.items()],
            "client": ("127.0.0.1", 40000),
            "server": ("rdev.test", 80),
        }
        sent_request = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
                self._started.set()
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await self._body.put(message["body"])
                if not message.get("more_body"):
                    await self._body.put(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                self._started.set()
                await self._body.put(None)

        self._task = asyncio.create_task(run())
        await asyncio.wait_for(self._started.wait(), STEP)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._gone.set()
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def next_event(self, timeout: float = STEP) -> SseEvent:
        while not self._pending:
            chunk = await asyncio.wait_for(self._body.get(), timeout)
            if chunk is None:
                self.ended.set()
                raise EOFError("stream ended")
            self._pending.extend(self._parser.feed(chunk.decode()))
        return self._pending.pop(0)

    async def until(self, kind: str, timeout: float = STEP) -> tuple[list[SseEvent], SseEvent]:
        """Events up to (and including) the next one of ``kind``: (before, that one)."""
        seen: list[SseEvent] = []
        while True:
            ev = await self.next_event(timeout)
            if ev.event == kind:
                return seen, ev
            seen.append(ev)

    async def logs(self, n: int) -> list[SseEvent]:
        out: list[SseEvent] = []
        while len(out) < n:
            ev = await self.next_event()
            if ev.event == "log":
                out.append(ev)
        return out

    async def rest(self) -> list[SseEvent]:
        out: list[SseEvent] = []
        with contextlib.suppress(EOFError):
            while True:
                out.append(await self.next_event())
        return out


@pytest.fixture
def app(container: Container) -> Any:
    return create_app(container.settings, container=container)


async def start_build(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A submitted build and a registered worker: (task_id, worker_id, project id)."""
    project = await create_project(client)
    build = await submit(client, project["id"])
    worker = await register_worker(client)
    return build["task_id"], worker, project["id"]


async def claim(client: httpx.AsyncClient, worker: str) -> str:
    r = await client.post(f"/workers/{worker}/claim", json={"max_tasks": 1, "wait_seconds": 5})
    assert r.status_code == 200 and r.json(), r.text
    return r.json()[0]["lease_token"]


async def append(client: httpx.AsyncClient, task_id: str, lease: str, *texts: str) -> int:
    r = await client.post(
        f"/builds/{task_id}/logs",
        json={"lease_token": lease, "chunks": [{"text": t} for t in texts]},
    )
    assert r.status_code == 200, r.text
    return int(r.json()["last_seq"])


async def complete(
    client: httpx.AsyncClient, worker: str, task_id: str, lease: str, success: bool = True
) -> None:
    r = await client.post(
        f"/workers/{worker}/complete/{task_id}",
        json={
            "lease_token": lease,
            "result": {
                "success": success,
                "output": "done",
                "error": None if success else "agent exited 1",
            },
        },
    )
    assert r.status_code == 200, r.text


def texts(events: list[SseEvent]) -> list[str]:
    return [e.json()["text"] for e in events if e.event == "log"]


async def test_client_connected_before_start_gets_every_chunk_live_and_final_status(
    client: httpx.AsyncClient, app: Any
) -> None:
    task_id, worker, _ = await start_build(client)
    async with AsgiEventStream(app, f"/builds/{task_id}/logs") as stream:
        assert stream.status == 200
        _, first = await stream.until("status")
        assert first.json()["status"] == "pending" and first.id is None
        lease = await claim(client, worker)
        _, running = await stream.until("status")
        assert running.json()["status"] == "running"
        sent: list[str] = []
        for batch in range(4):  # each batch must arrive before the next one is sent
            lines = [f"batch {batch} line {i} <b>&" for i in range(3)]
            await append(client, task_id, lease, *lines)
            sent += lines
            got = await stream.logs(3)
            assert texts(got) == lines
        await complete(client, worker, task_id, lease)
        tail = await stream.rest()
    assert stream.ended.is_set(), "the stream must end when the build ends"
    kinds = [e.event for e in tail]
    assert kinds == ["status", "end"], kinds
    final = tail[0].json()
    assert final["status"] == "completed" and final["final"] and final["success"] is True


async def test_every_chunk_has_its_sequence_as_event_id_in_order(
    client: httpx.AsyncClient, app: Any
) -> None:
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    await append(client, task_id, lease, "a", "b")
    await append(client, task_id, lease, "c")
    await complete(client, worker, task_id, lease)
    async with AsgiEventStream(app, f"/builds/{task_id}/logs") as stream:
        events = await stream.rest()
    logs = [e for e in events if e.event == "log"]
    assert [e.id for e in logs] == ["1", "2", "3"]
    assert [e.json()["seq"] for e in logs] == [1, 2, 3]
    assert texts(logs) == ["a", "b", "c"]
    assert [e.event for e in events[-2:]] == ["status", "end"]
    assert events[-2].json()["status"] == "completed"


async def test_reconnect_with_last_event_id_gets_exactly_the_missing_chunks(
    client: httpx.AsyncClient, app: Any
) -> None:
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    await append(client, task_id, lease, "one", "two", "three")
    async with AsgiEventStream(app, f"/builds/{task_id}/logs") as first:
        got = await first.logs(3)
    resume_at = got[-1].id
    assert resume_at == "3"
    # While the client is away the worker keeps sending.
    await append(client, task_id, lease, "four", "five")
    await append(client, task_id, lease, "six")
    async with AsgiEventStream(
        app, f"/builds/{task_id}/logs", {"last-event-id": resume_at}
    ) as second:
        missed = await second.logs(3)
        assert texts(missed) == ["four", "five", "six"]
        assert [e.id for e in missed] == ["4", "5", "6"]
        await append(client, task_id, lease, "seven")
        live = await second.logs(1)
        assert texts(live) == ["seven"]
        await complete(client, worker, task_id, lease, success=False)
        tail = await second.rest()
    assert [e.event for e in tail] == ["status", "end"]
    assert tail[0].json()["status"] == "failed"
    assert tail[0].json()["error"] == "agent exited 1"


async def test_since_query_parameter_resumes_when_no_last_event_id(
    client: httpx.AsyncClient, app: Any
) -> None:
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    await append(client, task_id, lease, "a", "b", "c", "d")
    await complete(client, worker, task_id, lease)
    async with AsgiEventStream(app, f"/builds/{task_id}/logs?since=2") as stream:
        events = await stream.rest()
    assert texts(events) == ["c", "d"]
    # Last-Event-ID wins over ?since=
    async with AsgiEventStream(
        app, f"/builds/{task_id}/logs?since=1", {"last-event-id": "3"}
    ) as stream:
        assert texts(await stream.rest()) == ["d"]


async def test_status_event_when_cancel_is_requested_and_stream_ends_cancelled(
    client: httpx.AsyncClient, app: Any
) -> None:
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    async with AsgiEventStream(app, f"/builds/{task_id}/logs") as stream:
        await stream.until("status")
        r = await client.post(f"/builds/{task_id}/cancel")
        assert r.status_code == 200, r.text
        _, ev = await stream.until("status")
        assert ev.json() == {**ev.json(), "status": "running", "cancel_requested": True}
        r = await client.post(
            f"/workers/{worker}/complete/{task_id}",
            json={
                "lease_token": lease,
                "result": {"success": False, "cancelled": True, "error": "cancelled"},
            },
        )
        assert r.status_code == 200, r.text
        tail = await stream.rest()
    assert tail[0].json()["status"] == "cancelled"


async def test_json_logs_without_event_stream_accept(client: httpx.AsyncClient) -> None:
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    await append(client, task_id, lease, "x", "y", "z")
    r = await client.get(f"/builds/{task_id}/logs", params={"since": 1})
    assert r.status_code == 200
    body = r.json()
    assert [c["text"] for c in body["chunks"]] == ["y", "z"]
    assert body["last_seq"] == 3


async def test_stream_refuses_unknown_builds_missing_tokens_and_bad_ids(
    client: httpx.AsyncClient, app: Any
) -> None:
    r = await client.get("/builds/nope/logs", headers={"accept": "text/event-stream"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    task_id, _, _ = await start_build(client)
    r = await client.get(
        f"/builds/{task_id}/logs", headers={"accept": "text/event-stream", "authorization": ""}
    )
    assert r.status_code == 401
    r = await client.get(
        f"/builds/{task_id}/logs", headers={"accept": "text/event-stream", "last-event-id": "abc"}
    )
    assert r.status_code == 422


async def listening(replica: Container) -> None:
    """Until the replica's live-log LISTEN is in place (seen in pg_stat_activity)."""
    listen = f'LISTEN "{replica.db.dialect.notify_channel}_log"'
    deadline = asyncio.get_running_loop().time() + STEP
    while True:
        async with replica.db.read() as conn:
            found = (
                await conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE query = :q"),
                    {"q": listen},
                )
            ).scalar()
        if found:
            return
        assert asyncio.get_running_loop().time() < deadline, f"no {listen} within {STEP}s"
        await asyncio.sleep(0.05)


@pytest.fixture
async def second_replica(container: Container) -> AsyncIterator[Container]:
    """Another server process's worth of state on the same database."""
    other = build_container(container.settings)
    await other.start(background=False)
    yield other
    await other.stop()


async def test_stream_on_one_replica_sees_chunks_appended_through_another(
    client: httpx.AsyncClient, app: Any, second_replica: Container, backend: str
) -> None:
    """On PostgreSQL the stream wakes on LISTEN/NOTIFY; polling is set too slow to pass."""
    if backend == "postgresql":
        second_replica.live.poll_seconds = 3600.0
    task_id, worker, _ = await start_build(client)
    lease = await claim(client, worker)
    other_app = create_app(second_replica.settings, container=second_replica)
    async with AsgiEventStream(other_app, f"/builds/{task_id}/logs") as stream:
        await stream.until("status")
        if backend == "postgresql":
            await listening(second_replica)  # the lazily started LISTEN connection is up
        for i in range(3):
            await append(client, task_id, lease, f"from replica A {i}")
            got = await stream.logs(1)
            assert texts(got) == [f"from replica A {i}"]
