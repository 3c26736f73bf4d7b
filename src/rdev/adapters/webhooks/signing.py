"""Standard Webhooks v1 signatures (HMAC-SHA256): make secrets, sign deliveries, verify them.

The signed content is ``f"{msg_id}.{timestamp}.".encode() + body`` where ``body`` is the exact
bytes sent; the key is the base64-decoded secret without its ``whsec_`` prefix. See
docs/webhooks.md for the receiver side. ``verify`` is what a receiver does; we ship it for the
docs, the tests and anyone embedding rdev.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
#: How far a webhook-timestamp may be from the receiver's clock (the reference library's 5 min).
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """A delivery failed verification: a header is missing, the timestamp is out of
    tolerance, or no signature matches. The message says which, never the secret."""


def new_secret() -> str:
    """A fresh endpoint secret: ``whsec_`` + standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: its base64-decoded bytes (prefix optional, padding optional)."""
    raw = secret.strip().removeprefix(SECRET_PREFIX)
    if not raw:
        raise ValueError("webhook secret is empty")
    try:
        # Like the reference library: tolerate missing padding.
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def _check_msg_id(msg_id: str) -> None:
    if not msg_id or "." in msg_id or any(c.isspace() for c in msg_id):
        raise ValueError("webhook-id must be non-empty, without '.' or whitespace")


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value ``v1,<base64>`` for one attempt."""
    _check_msg_id(msg_id)
    mac = _mac(secret_key(secret), msg_id, int(timestamp), body)
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt (a retry needs new ones)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    *,
    now: Callable[[], float] = time.time,
) -> None:
    """Check a received delivery as a receiver should; raise WebhookVerificationError if bad.

    ``headers`` is matched case-insensitively; ``body`` must be the raw request body. Any one
    matching ``v1`` signature among the space-separated ones is enough (secret rotation).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        ts_text = lower["webhook-timestamp"]
        sig_header = lower["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from None
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise WebhookVerificationError("invalid webhook-timestamp") from None
    current = int(now())
    if timestamp < current - tolerance:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > current + tolerance:
        raise WebhookVerificationError("message timestamp too new")
    expected = _mac(secret_key(secret), msg_id, timestamp, body)
    for part in sig_header.split(" "):
        version, _, encoded = part.partition(",")
        if version != "v1":
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return
    raise WebhookVerificationError("no matching signature")
