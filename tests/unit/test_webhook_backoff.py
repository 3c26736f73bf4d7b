"""Webhook retry schedule: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, then hourly, ±20 % jitter."""

from __future__ import annotations

import random

import pytest

from rdev.adapters.webhooks.backoff import base_delay, next_delay

EXPECTED = [5, 30, 120, 600, 1800, 3600, 3600, 3600, 3600]


def test_schedule_without_jitter_grows_then_stays_hourly() -> None:
    assert [base_delay(n) for n in range(1, 10)] == EXPECTED
    assert base_delay(1000) == 3600


def test_jitter_stays_within_twenty_percent_and_actually_varies() -> None:
    rng = random.Random(42)
    for attempt, base in enumerate(EXPECTED, start=1):
        delays = [next_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0.8 * base <= d <= 1.2 * base for d in delays)
        assert max(delays) - min(delays) > 0.2 * base  # spread, not a constant


def test_retry_after_longer_than_the_schedule_wins_but_is_capped() -> None:
    rng = random.Random(1)
    assert next_delay(1, retry_after=120, rng=rng) == 120
    assert next_delay(1, retry_after=10**9, rng=rng) == 6 * 3600
    assert next_delay(6, retry_after=1, rng=rng) >= 0.8 * 3600


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        next_delay(0)
