"""Webhook adapter: Standard Webhooks signing, SSRF guard, the HTTP sender, retry schedule.

Only bootstrap imports this package; services see the WebhookSender port.
"""

from rdev.adapters.webhooks.backoff import next_delay
from rdev.adapters.webhooks.payload import EVENT_FOR_FINAL_STATUS, event_body, new_message_id
from rdev.adapters.webhooks.sender import HttpWebhookSender
from rdev.adapters.webhooks.signing import WebhookVerificationError, new_secret, sign, verify
from rdev.adapters.webhooks.ssrf import (
    AllowList,
    CallbackRefused,
    CallbackUnresolvable,
    address_allowed,
    check_url,
)

__all__ = [
    "EVENT_FOR_FINAL_STATUS",
    "AllowList",
    "CallbackRefused",
    "CallbackUnresolvable",
    "HttpWebhookSender",
    "WebhookVerificationError",
    "address_allowed",
    "check_url",
    "event_body",
    "new_message_id",
    "new_secret",
    "next_delay",
    "sign",
    "verify",
]
