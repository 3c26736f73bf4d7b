"""The WebhookSender port: sign and POST one delivery attempt, and check a URL before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class DeliveryAttemptOutcome:
    ok: bool
    status_code: int | None
    error: str | None
    latency_ms: int
    response_excerpt: str | None
    #: 410 Gone or a refused address: do not try again.
    permanent: bool = False


class WebhookSender(Protocol):
    async def send(
        self, url: str, delivery_id: str, body: bytes, secret: str
    ) -> DeliveryAttemptOutcome: ...

    async def check_url(self, url: str) -> object:
        """Whether ``url`` may be called, by the same rules as a send (submit-time check).
        Raises ValidationFailed when refused; its ``permanent`` attribute (default True)
        says whether retrying could help (a host that does not resolve right now)."""
        ...
