"""Build callbacks: the dispatcher loop that sends the webhook outbox, and the deliveries API.

The outbox rows are written with the status change (adapters/db/outbox.py). The dispatcher
runs in every server process: it claims due deliveries under a lease (so replicas never send
the same delivery at the same time), sends each in its own task (a hanging receiver delays
nobody), records every attempt, and decides what happens next:

- a 2xx answer: ``delivered``;
- a permanent failure (410 Gone, a refused address): ``dead`` at once;
- anything else: retried after ``delay(attempts)`` until ``max_attempts``, then ``dead``.

Every attempt of one delivery carries the same ``webhook-id`` (the delivery id) and the same
body bytes; the signing secret is the project's ``webhook_secret``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import DatabaseUnavailable, ValidationFailed
from rdev.domain.events import BuildFinished, BuildsClaimed
from rdev.ports.deliveries import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DeliveryStore,
    DueDelivery,
)
from rdev.ports.webhooks import DeliveryAttemptOutcome, WebhookSender

log = structlog.get_logger(__name__)

#: ``delay(attempt) -> seconds`` to wait after failed attempt ``attempt`` (1-based).
RetryDelay = Callable[[int], float]
#: Extra lease time beyond the sender's own deadline, for the bookkeeping around a send.
LEASE_MARGIN_SECONDS = 5.0
#: Metrics name of each settled state ("retry" for a delivery that stays pending).
_OUTCOME = {
    DeliveryState.DELIVERED: "delivered",
    DeliveryState.DEAD: "dead",
    DeliveryState.PENDING: "retry",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


def callback_checker(sender: WebhookSender) -> Callable[[str], Awaitable[None]]:
    """BuildService.check_callback from the sender's ``check_url``.

    A URL the guard refuses for good (scheme, credentials, a refused address) fails the
    submit with 422 on ``callback_url``. A host that does not resolve right now is let
    through: that may be transient, and the send-time check decides (and retries).
    """

    async def check(url: str) -> None:
        try:
            await sender.check_url(url)
        except ValidationFailed as exc:
            if getattr(exc, "permanent", True):
                raise

    return check


class WebhookService:
    """The dispatcher (``run``) and the deliveries use cases (``list_for_build``,
    ``redeliver``). ``store`` is the DeliveryStore port; ``sender`` the WebhookSender port;
    ``delay`` the retry schedule; ``timeout`` the sender's per-attempt deadline; ``clock``
    stamps attempts and retry times (tests pass their own)."""

    def __init__(
        self,
        *,
        store: DeliveryStore,
        sender: WebhookSender,
        delay: RetryDelay,
        max_attempts: int,
        timeout: float,
        concurrency: int = 16,
        poll_interval: float = 1.0,
        on_attempt: Callable[[str], None] | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.store = store
        self.sender = sender
        self.delay = delay
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self.concurrency = max(1, concurrency)
        self.poll_interval = poll_interval
        #: Called with "delivered" | "retry" | "dead" after each attempt (metrics).
        self.on_attempt = on_attempt
        self.clock = clock
        self._wake = asyncio.Event()
        self._in_flight: dict[str, tuple[datetime, asyncio.Task[None]]] = {}

    # -- the dispatcher -------------------------------------------------------------
    def wake(self) -> None:
        """Look for due deliveries now (a build just finished, a redelivery was asked)."""
        self._wake.set()

    async def on_build_complete(self, event: BuildFinished) -> None:
        """On BuildFinished: the outbox row is committed with the status; send it promptly."""
        self.wake()

    async def on_builds_claimed(self, event: BuildsClaimed) -> None:
        """On BuildsClaimed: ``build.started`` deliveries may have been queued."""
        if any(t.spec.callback_url for t in event.tasks):
            self.wake()

    async def run(self, stop: asyncio.Event) -> None:
        """Background loop until ``stop`` is set (or the task is cancelled)."""
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self.dispatch_due()
                except DatabaseUnavailable:
                    pass  # the database logs the outage once; the next pass tries again
                except Exception:
                    log.exception("webhook dispatch pass failed")
                await self._idle(stop)
        finally:
            await self._abandon_in_flight()

    async def dispatch_due(self) -> int:
        """Claim as many due deliveries as there are free slots and start sending them."""
        free = self.concurrency - len(self._in_flight)
        claimed = await self.store.claim_due(free, self.timeout + LEASE_MARGIN_SECONDS)
        for d in claimed:
            task = asyncio.create_task(self._deliver(d), name=f"rdev-webhook-{d.id}")
            self._in_flight[d.id] = (d.lease, task)
            task.add_done_callback(functools.partial(self._finished, d.id))
        return len(claimed)

    async def join(self) -> None:
        """Wait until every send started so far has been settled (tests, shutdown)."""
        while self._in_flight:
            await asyncio.gather(
                *(t for _lease, t in list(self._in_flight.values())), return_exceptions=True
            )

    def _finished(self, delivery_id: str, _task: asyncio.Task[None]) -> None:
        self._in_flight.pop(delivery_id, None)
        self._wake.set()  # a slot is free; there may be more due work

    async def _idle(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(
                waiters, timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waiters:
                w.cancel()

    async def _abandon_in_flight(self) -> None:
        """On shutdown: cancel sends still running and hand their leases back."""
        leases = {i: lease for i, (lease, _t) in self._in_flight.items()}
        for _lease, task in list(self._in_flight.values()):
            task.cancel()
        for _lease, task in list(self._in_flight.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await asyncio.shield(self.store.release(leases))

    def next_state(
        self, outcome: DeliveryAttemptOutcome, attempts: int, now: datetime
    ) -> tuple[DeliveryState, datetime | None]:
        """After attempt number ``attempts``: delivered, dead (permanent failure or the last
        attempt), or pending again at ``now + delay(attempts)``."""
        if outcome.ok:
            return DeliveryState.DELIVERED, None
        if outcome.permanent or attempts >= self.max_attempts:
            return DeliveryState.DEAD, None
        return DeliveryState.PENDING, now + timedelta(seconds=self.delay(attempts))

    async def _deliver(self, d: DueDelivery) -> None:
        at = self.clock()
        outcome = await self._attempt(d)
        attempts = d.attempts + 1
        state, next_at = self.next_state(outcome, attempts, self.clock())
        if self.on_attempt is not None:
            self.on_attempt(_OUTCOME[state])
        try:
            kept = await self.store.settle(
                d.id,
                d.lease,
                DeliveryAttempt(
                    at=at,
                    status_code=outcome.status_code,
                    error=outcome.error,
                    latency_ms=outcome.latency_ms,
                    response_excerpt=outcome.response_excerpt,
                ),
                state=state,
                attempts=attempts,
                next_attempt_at=next_at,
            )
        except Exception:
            # The lease runs out and the delivery is sent again: at least once, never lost.
            log.exception("could not record a webhook attempt", delivery_id=d.id)
            return
        log.info(
            "webhook attempt",
            delivery_id=d.id,
            task_id=d.task_id,
            webhook_event=d.event,
            attempt=attempts,
            status_code=outcome.status_code,
            error=outcome.error,
            latency_ms=outcome.latency_ms,
            state=state.value if kept else "lease lost",
        )

    async def _attempt(self, d: DueDelivery) -> DeliveryAttemptOutcome:
        if d.secret is None or not d.secret.get_secret_value():
            return DeliveryAttemptOutcome(
                ok=False,
                status_code=None,
                error="the project has no webhook secret (rotate one to resume deliveries)",
                latency_ms=0,
                response_excerpt=None,
            )
        started = asyncio.get_running_loop().time()
        try:
            # The sender keeps its own deadline; this is a backstop so a lease never outlives
            # a stuck send.
            async with asyncio.timeout(self.timeout + LEASE_MARGIN_SECONDS / 2):
                return await self.sender.send(
                    d.url, d.id, d.payload.encode("utf-8"), d.secret.get_secret_value()
                )
        except Exception as exc:  # noqa: BLE001 - an attempt that broke is a failed attempt
            if not isinstance(exc, TimeoutError):
                log.exception("webhook sender failed", delivery_id=d.id)
            error = (
                f"timeout after {self.timeout:g}s"
                if isinstance(exc, TimeoutError)
                else f"internal error ({type(exc).__name__})"
            )
            return DeliveryAttemptOutcome(
                ok=False,
                status_code=None,
                error=error,
                latency_ms=int((asyncio.get_running_loop().time() - started) * 1000),
                response_excerpt=None,
            )

    # -- the deliveries API ---------------------------------------------------------
    async def list_for_build(self, principal: Principal, task_id: str) -> list[Delivery]:
        """A build's deliveries with their attempts; needs builds:read and the project."""
        principal.require("builds:read", "builds:write")
        build, deliveries = await self.store.for_build(task_id)
        principal.require_project(build.project_id, build.project_name)
        return deliveries

    async def redeliver(self, principal: Principal, delivery_id: str) -> Delivery:
        """Send a delivery again: a new attempt cycle under the same id, due now."""
        principal.require("builds:write")
        delivery = await self.store.get(delivery_id)
        principal.require_project(delivery.project_id, delivery.project_name)
        await self.store.redeliver(delivery_id)
        self.wake()
        return await self.store.get(delivery_id)
