"""HttpWebhookSender against real HTTP receivers on loopback (free ports, no other traffic).

Every receiver counts TCP connections, so "never connected" is observed, not assumed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rdev.adapters.webhooks.sender import HttpWebhookSender, PinnedNetworkBackend
from rdev.adapters.webhooks.signing import new_secret
from rdev.adapters.webhooks.ssrf import AllowList, CallbackRefused, IPAddress

BODY = b'{"type":"build.completed","timestamp":"2026-01-01T00:00:00Z","data":{"task_id":"t1"}}'
LOOPBACK = ["127.0.0.0/8", "::1/128"]


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes


Responder = Callable[[Request, asyncio.StreamWriter], Awaitable[None]]


def answer(status: int, body: bytes = b"", extra: str = "") -> Responder:
    async def respond(_req: Request, writer: asyncio.StreamWriter) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
        writer.write(head.encode() + body)
        await writer.drain()

    return respond


async def hang(_req: Request, _writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: records connections and requests, answers with ``respond``."""

    respond: Responder
    host: str = "127.0.0.1"
    connections: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    #: (peer address, handler task) of every connection, in the order they were accepted.
    accepted: list[tuple[Any, asyncio.Task]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    async def start(self) -> Receiver:
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def url(self, path: str = "/hook") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        self.accepted.append((writer.get_extra_info("peername"), asyncio.current_task()))
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Request(method, target, headers, body)
            self.requests.append(request)
            await self.respond(request, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    started: list[Receiver] = []

    async def make(respond: Responder = answer(200, b"thanks"), host: str = "127.0.0.1"):
        r = await Receiver(respond, host).start()
        started.append(r)
        return r

    yield make
    for r in started:
        await r.close()


def independent_verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """From the Standard Webhooks spec text, not from rdev."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(sig, f"v1,{expected}") for sig in headers["webhook-signature"].split()
    )


def fixed_resolver(table: dict[str, list[str]]):
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ipaddress.ip_address(a) for a in table[host]]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


async def settle(*receivers: Receiver) -> None:
    """Until every connection made to ``receivers`` so far has reached them and been handled.

    A probe connection made now is accepted after any earlier one (the listen queue is
    first in, first out); once it is, the earlier ones' handlers are awaited. The probe is
    taken back out of ``connections``. Instead of sleeping a while and hoping.
    """
    for r in receivers:
        _, writer = await asyncio.open_connection(r.host, r.port)
        probe = writer.get_extra_info("sockname")[:2]
        writer.close()
        deadline = time.monotonic() + 60
        while not any(tuple(peer[:2]) == probe for peer, _ in r.accepted):
            assert time.monotonic() < deadline, "the probe connection never arrived"
            await asyncio.sleep(0.01)
        index = next(i for i, (peer, _) in enumerate(r.accepted) if tuple(peer[:2]) == probe)
        _, probe_task = r.accepted.pop(index)
        await asyncio.wait_for(probe_task, 60)
        earlier = [task for _, task in r.accepted[:index]]
        if earlier:
            await asyncio.wait_for(asyncio.gather(*earlier, return_exceptions=True), 60)
        r.connections -= 1


async def test_delivery_to_allowlisted_loopback_arrives_signed(receiver) -> None:
    r = await receiver()
    secret = new_secret()
    sender = HttpWebhookSender(["127.0.0.1/32"], clock=lambda: 1_800_000_000.0)
    outcome = await sender.send(r.url("/hooks/rdev?bot=1"), "msg_abc", BODY, secret)
    assert outcome.ok and outcome.status_code == 200 and not outcome.permanent
    assert outcome.error is None and outcome.response_excerpt == "thanks"
    assert outcome.latency_ms >= 0
    [req] = r.requests
    assert (req.method, req.target, req.body) == ("POST", "/hooks/rdev?bot=1", BODY)
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"].startswith("rdev/")
    assert req.headers["webhook-id"] == "msg_abc"
    assert req.headers["webhook-timestamp"] == "1800000000"
    assert req.headers["host"] == f"127.0.0.1:{r.port}"
    assert independent_verify(secret, req.headers, req.body)
    assert not independent_verify(new_secret(), req.headers, req.body)


async def test_each_attempt_gets_its_own_timestamp_and_signature_under_one_id(receiver) -> None:
    r = await receiver()
    now = [1_800_000_000.0]
    sender = HttpWebhookSender(LOOPBACK, clock=lambda: now[0])
    secret = new_secret()
    await sender.send(r.url(), "msg_same", BODY, secret)
    now[0] += 30
    await sender.send(r.url(), "msg_same", BODY, secret)
    first, second = r.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "msg_same"
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 30
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    assert all(independent_verify(secret, q.headers, q.body) for q in (first, second))


async def test_loopback_receiver_is_never_contacted_without_an_allowlist(receiver) -> None:
    r = await receiver()
    outcome = await HttpWebhookSender().send(r.url(), "msg_1", BODY, new_secret())
    await settle(r)
    assert r.connections == 0
    assert not outcome.ok and outcome.permanent and outcome.status_code is None
    assert "127.0.0.1 is loopback" in outcome.error


async def test_ipv6_loopback_receiver_is_never_contacted_without_an_allowlist(receiver) -> None:
    try:
        r = await receiver(host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    outcome = await HttpWebhookSender().send(r.url(), "msg_1", BODY, new_secret())
    await settle(r)
    assert r.connections == 0
    assert not outcome.ok and outcome.permanent and "::1 is loopback" in outcome.error


async def test_localhost_name_is_resolved_refused_and_never_contacted(receiver) -> None:
    r = await receiver()
    outcome = await HttpWebhookSender().send(
        f"http://localhost:{r.port}/hook", "msg_1", BODY, new_secret()
    )
    await settle(r)
    assert r.connections == 0
    assert not outcome.ok and outcome.permanent
    assert "localhost resolves to" in outcome.error and "loopback" in outcome.error


async def test_redirect_is_reported_and_not_followed(receiver) -> None:
    target = await receiver()
    redirector = await receiver(answer(302, extra=f"Location: {target.url('/elsewhere')}\r\n"))
    outcome = await HttpWebhookSender(LOOPBACK).send(redirector.url(), "msg_1", BODY, new_secret())
    await settle(redirector, target)
    assert len(redirector.requests) == 1
    assert target.connections == 0
    assert not outcome.ok and outcome.status_code == 302 and not outcome.permanent
    assert "redirects are not followed" in outcome.error


async def test_gone_is_permanent_and_server_error_is_retryable(receiver) -> None:
    gone = await receiver(answer(410, b"endpoint removed"))
    broken = await receiver(answer(500, b"oops"))
    sender = HttpWebhookSender(LOOPBACK)
    g = await sender.send(gone.url(), "msg_1", BODY, new_secret())
    b = await sender.send(broken.url(), "msg_1", BODY, new_secret())
    assert (g.ok, g.status_code, g.permanent) == (False, 410, True)
    assert (b.ok, b.status_code, b.permanent) == (False, 500, False)
    assert b.error.startswith("HTTP 500") and b.response_excerpt == "oops"


async def test_hanging_receiver_does_not_delay_other_sends(receiver) -> None:
    slow = await receiver(hang)
    fast = [await receiver() for _ in range(3)]
    sender = HttpWebhookSender(LOOPBACK, timeout=3600)  # the slow send surely still hangs
    hanging = asyncio.create_task(sender.send(slow.url(), "msg_1", BODY, new_secret()))
    deadline = time.monotonic() + 60
    while not slow.requests:  # it got the request, and will never answer
        assert time.monotonic() < deadline and not hanging.done(), hanging
        await asyncio.sleep(0.01)
    outcomes = await asyncio.gather(*(sender.send(f.url(), "m", BODY, new_secret()) for f in fast))
    assert all(o.ok for o in outcomes)
    assert not hanging.done()  # they did not wait behind the hanging one
    hanging.cancel()


async def test_hanging_receiver_is_cut_at_the_timeout(receiver) -> None:
    slow = await receiver(hang)
    sender = HttpWebhookSender(LOOPBACK, timeout=1.0)
    start = time.monotonic()
    # Only the sender's own 1 s deadline can end this send (the receiver hangs an hour).
    outcome = await asyncio.wait_for(sender.send(slow.url(), "msg_1", BODY, new_secret()), 60)
    assert not outcome.ok and not outcome.permanent
    assert outcome.error == "timeout after 1s"
    assert len(slow.requests) == 1  # it did get the request, then never answered
    assert time.monotonic() - start >= 0.9  # not before the deadline (later is the load)


async def test_receiver_trickling_its_status_line_is_cut_at_the_timeout(receiver) -> None:
    async def trickle(_req: Request, writer: asyncio.StreamWriter) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    r = await receiver(trickle)
    # The status line takes ~50 s to trickle in; a per-read timeout would never fire.
    outcome = await asyncio.wait_for(
        HttpWebhookSender(LOOPBACK, timeout=1.0).send(r.url(), "m1", BODY, "whsec_AAAA"), 30
    )
    assert not outcome.ok and outcome.error == "timeout after 1s"


async def test_a_trickled_answer_body_is_cut_at_the_deadline_keeping_the_status(receiver) -> None:
    async def slow_body(_req: Request, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    r = await receiver(slow_body)
    # The body never ends; only the sender's 1 s deadline can end the send.
    outcome = await asyncio.wait_for(
        HttpWebhookSender(LOOPBACK, timeout=1.0).send(r.url(), "m1", BODY, "whsec_AAAA"), 30
    )
    assert outcome.ok and outcome.status_code == 200
    assert outcome.response_excerpt and set(outcome.response_excerpt) == {"x"}


async def test_answer_excerpt_is_capped_and_scrubbed_of_the_secret(receiver) -> None:
    secret = new_secret()
    r = await receiver(answer(400, f"bad signature for {secret} ".encode() + b"z" * 50_000))
    outcome = await HttpWebhookSender(LOOPBACK, max_body=100).send(r.url(), "m1", BODY, secret)
    assert outcome.status_code == 400 and not outcome.ok
    assert len(outcome.response_excerpt) <= 100
    assert secret not in outcome.response_excerpt
    assert outcome.response_excerpt.startswith("bad signature for ***")


async def test_connection_refused_is_an_error_worth_retrying() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    outcome = await HttpWebhookSender(LOOPBACK).send(
        f"http://127.0.0.1:{port}/", "m1", BODY, new_secret()
    )
    assert not outcome.ok and not outcome.permanent and outcome.status_code is None
    assert outcome.error.startswith("connection failed")


async def test_host_is_resolved_once_and_the_checked_address_is_the_one_used(receiver) -> None:
    r = await receiver()
    # 127.0.0.2 refuses the connection, so the sender moves on to the next checked address.
    resolve = fixed_resolver({"hooks.test": ["127.0.0.2", "127.0.0.1"]})
    sender = HttpWebhookSender(["127.0.0.0/8"], resolve=resolve)
    outcome = await sender.send(f"http://hooks.test:{r.port}/cb", "m1", BODY, new_secret())
    assert outcome.ok, outcome.error
    assert resolve.calls == ["hooks.test"]
    assert r.requests[0].headers["host"] == f"hooks.test:{r.port}"


async def test_unresolvable_host_is_not_permanent() -> None:
    async def fail(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(-2, "Name or service not known")

    outcome = await HttpWebhookSender(resolve=fail).send(
        "https://x.invalid/", "m1", BODY, "whsec_AAAA"
    )
    assert not outcome.ok and not outcome.permanent
    assert "does not resolve" in outcome.error


async def test_peer_address_is_rechecked_after_connecting(receiver) -> None:
    """Even if an unchecked address slipped into the pin list, the socket's peer is judged."""
    r = await receiver()
    backend = PinnedNetworkBackend([ipaddress.ip_address("127.0.0.1")], AllowList())

    with pytest.raises(CallbackRefused, match="127.0.0.1 is loopback"):
        await backend.connect_tcp("hooks.test", r.port)
    await settle(r)
    assert r.connections == 1 and r.requests == []  # connected, judged, closed; nothing sent


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI not available")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=hooks.test", "-addext", "subjectAltName=DNS:hooks.test",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_to_a_pinned_address_verifies_the_certificate_for_the_url_host(
    tls_files,
) -> None:
    cert, key = tls_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    r = Receiver(answer(204))
    r._server = await asyncio.start_server(r._handle, "127.0.0.1", 0, ssl=server_ctx)
    r.port = r._server.sockets[0].getsockname()[1]
    try:
        table = {"hooks.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}
        sender = HttpWebhookSender(
            ["127.0.0.1/32"], resolve=fixed_resolver(table), ssl_context=client_ctx
        )
        good = await sender.send(f"https://hooks.test:{r.port}/", "m1", BODY, new_secret())
        assert good.ok and good.status_code == 204, good.error
        assert r.requests[0].headers["host"] == f"hooks.test:{r.port}"
        wrong_name = await sender.send(f"https://other.test:{r.port}/", "m1", BODY, new_secret())
        assert not wrong_name.ok and "Hostname mismatch" in wrong_name.error
        assert len(r.requests) == 1
    finally:
        await r.close()
