"""Retry schedule for webhook deliveries: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then hourly.

Shorter than the Standard Webhooks example (which spreads over days) because a build callback
is only useful while the bot still waits; ``RDEV_WEBHOOK_MAX_ATTEMPTS`` bounds the total.
Jitter (±20 %) keeps many failed deliveries from retrying in lockstep.
"""

from __future__ import annotations

import random

#: Delay after failed attempt n (1-based) before attempt n+1, in seconds, without jitter.
SCHEDULE_SECONDS: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
JITTER = 0.2
#: A receiver's Retry-After is honoured up to this long.
MAX_RETRY_AFTER_SECONDS = 6 * 3600.0


def base_delay(attempt: int) -> float:
    """The scheduled delay after ``attempt`` failed attempts (1 = the first), no jitter."""
    if attempt < 1:
        raise ValueError("attempt counts from 1 (the attempt that just failed)")
    return SCHEDULE_SECONDS[min(attempt, len(SCHEDULE_SECONDS)) - 1]


def next_delay(
    attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): the schedule ±20 % jitter.

    A receiver's ``Retry-After`` (seconds) raises the delay when it asks for longer, capped at
    MAX_RETRY_AFTER_SECONDS.
    """
    delay = base_delay(attempt) * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, MAX_RETRY_AFTER_SECONDS)
    return delay
