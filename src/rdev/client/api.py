"""The HTTP side of the client: requests with one-line errors, and the live log stream."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from rdev import __version__
from rdev.client.config import ClientError, Connection
from rdev.client.sse import SseEvent, SseParser
from rdev.domain.secrets import SecretScrubber

#: Consecutive failed reconnects of a live stream before giving up.
MAX_RECONNECTS = 8


class ApiClient:
    def __init__(self, conn: Connection, timeout: float = 30.0) -> None:
        self.conn = conn
        self._scrub = SecretScrubber([conn.token])
        self.http = httpx.Client(
            base_url=conn.server,
            headers={
                "Authorization": f"Bearer {conn.token}",
                "User-Agent": f"rdev-client/{__version__}",
            },
            timeout=httpx.Timeout(timeout, read=max(timeout, 65.0)),
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plain requests -----------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        self.raise_for_problem(r)
        if r.status_code == 204 or not r.content:
            return None
        try:
            return r.json()
        except ValueError:
            raise ClientError(
                f"the server answered {path} with something that is not JSON (HTTP {r.status_code})"
            ) from None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def _unreachable(self, exc: Exception) -> ClientError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ClientError(
                f"cannot reach the rdev server at {self.conn.server}: {self._scrub.scrub(reason)}"
            )
        return ClientError(f"connection to {self.conn.server} failed: {self._scrub.scrub(reason)}")

    def raise_for_problem(self, r: httpx.Response) -> None:
        if r.status_code < 400:
            return
        detail = ""
        field = None
        try:
            body = r.json()
            if isinstance(body, dict):
                detail = str(body.get("detail") or body.get("title") or "")
                field = body.get("field")
        except ValueError:
            detail = r.text[:200]
        detail = self._scrub.scrub(" ".join(detail.split()))
        code = r.status_code
        if code == 401:
            msg = (
                f"the server rejected the token (401 Unauthorized): {detail}; "
                "run `rdev login` or pass --token"
            )
        elif code == 403:
            msg = f"forbidden (403): {detail}"
        elif code == 404:
            msg = f"not found (404): {detail}"
        elif code in (400, 409, 422):
            msg = f"refused ({code}): {detail}" + (f" [field: {field}]" if field else "")
        else:
            msg = f"server error ({code}): {detail or r.reason_phrase}"
        raise ClientError(msg, status=code)

    # -- live log stream ----------------------------------------------------------------
    @contextlib.contextmanager
    def _events(self, task_id: str, last_seq: int) -> Iterator[Iterator[SseEvent]]:
        headers = {"Accept": "text/event-stream"}
        if last_seq:
            headers["Last-Event-ID"] = str(last_seq)
        with self.http.stream("GET", f"/builds/{task_id}/logs", headers=headers) as r:
            if r.status_code >= 400:
                r.read()
                self.raise_for_problem(r)
            parser = SseParser()

            def events() -> Iterator[SseEvent]:
                for text in r.iter_text():
                    yield from parser.feed(text)

            yield events()

    def follow(
        self,
        task_id: str,
        *,
        since: int = 0,
        on_log: Callable[[dict[str, Any]], None],
        on_status: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """Stream the build's log and status until it ends; returns the final build.

        Reconnects after network errors with ``Last-Event-ID``, so no chunk is lost or
        shown twice; gives up after several failures in a row.
        """
        last, failures = since, 0
        while True:
            try:
                with self._events(task_id, last) as events:
                    for ev in events:
                        failures = 0
                        if ev.event == "log":
                            chunk = ev.json()
                            last = int(chunk["seq"])
                            on_log(chunk)
                        elif ev.event == "status":
                            on_status(ev.json())
                        elif ev.event == "end":
                            return dict(self.get(f"/builds/{task_id}"))
            except httpx.TransportError as exc:
                failures += 1
                if failures > MAX_RECONNECTS:
                    raise self._unreachable(exc) from None
            else:
                failures += 1  # closed without an end event (a server restart): resume
                if failures > MAX_RECONNECTS:
                    raise ClientError("the log stream keeps closing early; giving up")
            time.sleep(min(0.5 * 2 ** (failures - 1), 5.0))
