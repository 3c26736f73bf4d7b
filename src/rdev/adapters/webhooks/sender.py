"""HttpWebhookSender: one signed POST of one delivery attempt, SSRF-safe (the WebhookSender port).

How an attempt goes:
1. Parse the URL and resolve its host ONCE; every address must pass the SSRF rules
   (``ssrf.check_target``), otherwise the outcome is ``permanent`` and nothing connects.
2. Connect only to those checked addresses (a network backend that ignores the host name, so
   the HTTP client cannot resolve again: DNS rebinding defence), and re-check the peer address
   the socket actually reached. Host header and TLS SNI/certificate check keep the URL's name.
3. POST the body with the Standard Webhooks headers, never follow a redirect, read at most
   ``max_body`` bytes of the answer, all under ONE deadline (``timeout``) covering resolution,
   connect, TLS, send and the answer's headers, so a receiver that trickles bytes is cut.

We use httpcore (httpx's engine, already installed with httpx) because it takes a network
backend; environment proxies are deliberately not used (they would bypass the pinning).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore

from rdev import __version__
from rdev.adapters.webhooks.signing import signature_headers
from rdev.adapters.webhooks.ssrf import (
    AllowList,
    CallbackRefused,
    CallbackTarget,
    IPAddress,
    Resolver,
    check_target,
    parse_callback_url,
    refusal_reason,
    resolve_host,
)
from rdev.domain.secrets import SecretScrubber
from rdev.ports.webhooks import DeliveryAttemptOutcome

USER_AGENT = f"rdev/{__version__} (webhooks)"


class PinnedNetworkBackend(httpcore.AsyncNetworkBackend):
    """Connects to pre-checked addresses only, whatever host name the HTTP client asks for.

    After connecting it re-checks the peer address of the socket: it must be one of the pinned
    addresses and (unless the URL's host is allowlisted by name) pass the SSRF rules.
    """

    def __init__(
        self,
        addresses: Sequence[IPAddress],
        allowlist: AllowList,
        *,
        host_admitted: bool = False,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("no addresses to connect to")
        self._addresses = list(addresses)
        self._allowlist = allowlist
        self._host_admitted = host_admitted
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failures: list[str] = []
        for ip in self._addresses:
            try:
                stream = await self._inner.connect_tcp(
                    str(ip),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failures.append(f"{ip}: {_root_cause(exc)}")
                continue
            reason = self._peer_refusal(stream)
            if reason is not None:
                await stream.aclose()
                raise CallbackRefused(reason, field=None)
            return stream
        raise httpcore.ConnectError("; ".join(failures))

    def _peer_refusal(self, stream: httpcore.AsyncNetworkStream) -> str | None:
        peer = stream.get_extra_info("server_addr")
        try:
            ip = ipaddress.ip_address(str(peer[0]).split("%", 1)[0])
        except (TypeError, IndexError, ValueError):
            return "could not determine the connected peer address"
        pinned = {ipaddress.ip_address(str(a).split("%", 1)[0]) for a in self._addresses}
        if ip not in pinned:
            return f"connected to {ip}, which is not a checked address"
        if self._host_admitted:
            return None
        return refusal_reason(ip, self._allowlist)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise CallbackRefused("unix sockets are not allowed", field=None)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class HttpWebhookSender:
    """The WebhookSender port over HTTP(S). Stateless apart from configuration; safe to share
    between concurrent sends (each send has its own connection).

    ``allowlist``: an AllowList or the raw ``RDEV_WEBHOOK_ALLOWLIST`` entries.
    ``timeout``: one deadline for the whole attempt, in seconds.
    ``max_body``: bytes of the receiver's answer kept in ``response_excerpt``.
    ``resolve`` / ``clock`` / ``ssl_context``: injectable for tests.
    """

    def __init__(
        self,
        allowlist: AllowList | Iterable[str] = (),
        timeout: float = 10.0,
        max_body: int = 4096,
        *,
        resolve: Resolver = resolve_host,
        clock: Callable[[], float] = time.time,
        ssl_context: ssl.SSLContext | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self.allowlist = (
            allowlist if isinstance(allowlist, AllowList) else AllowList.parse(allowlist)
        )
        self.timeout = timeout
        self.max_body = max_body
        self._resolve = resolve
        self._clock = clock
        self._ssl_context = ssl_context
        self._user_agent = user_agent

    async def check_url(self, url: str) -> list[IPAddress]:
        """Submit-time check with this sender's allowlist and resolver; raises CallbackRefused."""
        return await check_target(parse_callback_url(url), self.allowlist, self._resolve)

    async def send(
        self, url: str, delivery_id: str, body: bytes, secret: str
    ) -> DeliveryAttemptOutcome:
        scrubber = SecretScrubber([secret])
        started = time.monotonic()

        def outcome(**kw: Any) -> DeliveryAttemptOutcome:
            kw.setdefault("status_code", None)
            kw.setdefault("response_excerpt", None)
            if kw.get("error"):
                kw["error"] = scrubber.scrub(kw["error"])
            latency = int((time.monotonic() - started) * 1000)
            return DeliveryAttemptOutcome(latency_ms=latency, **kw)

        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            target = parse_callback_url(url)
            headers = self._headers(target, delivery_id, body, secret)
        except CallbackRefused as exc:
            return outcome(ok=False, error=f"refused: {exc.reason}", permanent=True)
        except ValueError as exc:  # an unusable secret or delivery id: retrying cannot help
            return outcome(ok=False, error=f"cannot sign: {exc}", permanent=True)
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout_at(deadline):
                    addresses = await check_target(target, self.allowlist, self._resolve)
                    pool = await stack.enter_async_context(
                        httpcore.AsyncConnectionPool(
                            ssl_context=self._ssl_context,
                            max_connections=1,
                            retries=0,
                            network_backend=PinnedNetworkBackend(
                                addresses,
                                self.allowlist,
                                host_admitted=target.literal_ip is None
                                and self.allowlist.admits_host(target.host),
                            ),
                        )
                    )
                    response = await stack.enter_async_context(
                        pool.stream(
                            "POST",
                            httpcore.URL(
                                scheme=target.scheme.encode(),
                                host=target.host.encode("ascii"),
                                port=target.port,
                                target=target.target.encode("utf-8"),
                            ),
                            headers=headers,
                            content=body,
                            extensions={"timeout": self._phase_timeouts()},
                        )
                    )
            except CallbackRefused as exc:
                return outcome(ok=False, error=f"refused: {exc.reason}", permanent=exc.permanent)
            except (TimeoutError, httpcore.TimeoutException):
                return outcome(ok=False, error=f"timeout after {self.timeout:g}s")
            except (httpcore.NetworkError, httpcore.ProtocolError, OSError) as exc:
                return outcome(ok=False, error=f"connection failed: {exc or type(exc).__name__}")
            excerpt = await self._read_excerpt(response, deadline)
            status = response.status
            ok = 200 <= status < 300
            return outcome(
                ok=ok,
                status_code=status,
                error=None if ok else _status_error(status, response),
                response_excerpt=scrubber.scrub(excerpt) if excerpt else None,
                permanent=status == 410,
            )
        raise AssertionError("unreachable")  # pragma: no cover (AsyncExitStack never swallows)

    def _headers(
        self, target: CallbackTarget, delivery_id: str, body: bytes, secret: str
    ) -> list[tuple[bytes, bytes]]:
        signed = signature_headers(secret, delivery_id, int(self._clock()), body)
        pairs = [
            ("Host", target.host_header),
            ("Content-Type", "application/json"),
            ("User-Agent", self._user_agent),
            ("Content-Length", str(len(body))),
            *signed.items(),
        ]
        return [(k.encode("ascii"), v.encode("ascii")) for k, v in pairs]

    def _phase_timeouts(self) -> dict[str, float]:
        # A backstop only: the asyncio deadline is what bounds the whole attempt.
        return {
            "connect": self.timeout,
            "read": self.timeout,
            "write": self.timeout,
            "pool": self.timeout,
        }

    async def _read_excerpt(self, response: httpcore.Response, deadline: float) -> str:
        """Up to max_body bytes of the answer; a slow or broken body just ends the excerpt
        (the status is already known and is what counts)."""
        chunks = bytearray()
        if self.max_body <= 0:
            return ""
        with contextlib.suppress(
            TimeoutError,
            httpcore.TimeoutException,
            httpcore.NetworkError,
            httpcore.ProtocolError,
            OSError,
        ):
            async with asyncio.timeout_at(deadline):
                async for chunk in response.aiter_stream():
                    chunks += chunk
                    if len(chunks) >= self.max_body:
                        break
        return bytes(chunks[: self.max_body]).decode("utf-8", errors="replace")


def _root_cause(exc: BaseException) -> str:
    """The most specific message in an exception chain (anyio wraps "connection refused")."""
    text = str(exc) or type(exc).__name__
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return seen.strerror if not seen.errno else f"[Errno {seen.errno}] {seen.strerror}"
        seen = seen.__cause__ or seen.__context__
    return text


def _status_error(status: int, response: httpcore.Response) -> str:
    reason = response.extensions.get("reason_phrase", b"")
    text = f"HTTP {status}"
    if isinstance(reason, bytes) and reason:
        text += " " + reason.decode("ascii", errors="replace")
    if 300 <= status < 400:
        text += " (redirects are not followed)"
    return text
