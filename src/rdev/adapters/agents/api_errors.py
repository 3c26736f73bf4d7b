"""Model API failures as the agent CLIs report them, turned into one-line reasons.

Retryable (the build may be tried again later): 429 rate limits, 529 / "overloaded", and
the gateway statuses 502/503/504. A 500, bad credentials and an unreachable endpoint are
reported as plain failures: retrying them later rarely helps and hides a broken setup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNREACHABLE = re.compile(
    r"unable to connect|cannot connect|connection ?refused|econnrefused|enotfound|"
    r"connection error|fetch failed|socket|network",
    re.IGNORECASE,
)
_OVERLOADED = re.compile(r"\b529\b|overloaded", re.IGNORECASE)
_RATE_LIMIT = re.compile(r"\b429\b|rate.?limit", re.IGNORECASE)
_STATUS_IN_TEXT = re.compile(r"\b([45]\d\d)\b")


@dataclass(frozen=True)
class ApiFailure:
    reason: str
    retryable: bool
    status: int | None


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_api_failure(status: int | None, message: str) -> ApiFailure:
    """``status`` is the HTTP status if the CLI reported one; ``message`` its error text."""
    msg = _one_line(message or "")
    if status is None:
        found = _STATUS_IN_TEXT.search(msg)
        if found and ("error" in msg.lower() or "status" in msg.lower()):
            status = int(found.group(1))
    if status == 429 or (status is None and _RATE_LIMIT.search(msg)):
        return ApiFailure(f"model API rate limit (429): {msg}", True, 429)
    if status == 529 or (status is None and _OVERLOADED.search(msg)):
        return ApiFailure(f"model API overloaded: {msg}", True, status)
    if status in (401, 403):
        return ApiFailure(f"model API rejected the credentials ({status}): {msg}", False, status)
    if status is not None and status >= 500:
        retryable = status in (502, 503, 504)
        return ApiFailure(f"model API server error ({status}): {msg}", retryable, status)
    if status is not None:
        return ApiFailure(f"model API error ({status}): {msg}", False, status)
    if _UNREACHABLE.search(msg):
        return ApiFailure(f"model API unreachable: {msg}", False, None)
    return ApiFailure(f"model API error: {msg}", False, None)
