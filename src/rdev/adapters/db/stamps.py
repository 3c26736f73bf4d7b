"""The values the SQL stores stamp on new rows: ids, random tokens, UTC timestamps.

One place, so every store makes them the same way (and a test can see what a row got).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now, timezone-aware UTC (the tables store UTC on both backends)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A row id: 32 hex characters, unguessable enough to show in URLs."""
    return uuid.uuid4().hex


def new_token(nbytes: int = 24) -> str:
    """A random URL-safe secret (lease tokens)."""
    return secrets.token_urlsafe(nbytes)
