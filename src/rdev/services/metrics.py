"""Prometheus metrics: one registry per Container (never the global one), so several apps
in one test process never clash.

Two kinds of figures:

- counted in this process as things happen (sum them over replicas):
  ``rdev_http_requests_total{method,route,code}``, ``rdev_claim_latency_seconds``,
  ``rdev_build_duration_seconds{status}``, ``rdev_webhook_deliveries_total{outcome}``;
- read from the database at scrape time (the same on every replica: use ``max``):
  ``rdev_builds_total{status}`` (builds that entered each status, from the audit trail),
  ``rdev_builds_current{status}``, ``rdev_queue_depth``,
  ``rdev_queue_oldest_pending_age_seconds``, ``rdev_workers_online``,
  ``rdev_webhook_outbox{state}``.

The webhook dispatcher reports each delivery attempt's outcome with
:func:`record_delivery` (module level, no container needed) or
``container.metrics.record_delivery``.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rdev.domain.events import BuildFinished, BuildsClaimed
from rdev.domain.models import BuildStatus
from rdev.ports.queue import QueueStats

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = [s.value for s in BuildStatus]
CLAIM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

_live: weakref.WeakSet[Metrics] = weakref.WeakSet()


class StatsSource(Protocol):
    async def snapshot(self, offline_after_seconds: float) -> dict[str, Any]: ...

    async def queued_since(self, task_ids: list[str]) -> dict[str, datetime]: ...


class QueueStatsSource(Protocol):
    async def queue_stats(self) -> QueueStats: ...


def record_delivery(outcome: str) -> None:
    """Count one webhook delivery attempt by outcome in every live metrics registry.

    Suggested outcomes: ``delivered``, ``retry`` (failed, will be retried), ``dead``
    (gave up), ``blocked`` (refused by the SSRF guard).
    """
    for m in list(_live):
        m.record_delivery(outcome)


class _ScrapeTime(Collector):
    """Families computed from the last :meth:`Metrics.refresh` (the database figures)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        d = self.data
        if not d:
            return
        up = GaugeMetricFamily("rdev_metrics_database_up", "1 if the scrape read the database.")
        up.add_metric([], 0 if d.get("error") else 1)
        yield up
        if d.get("error"):
            return
        total = CounterMetricFamily(
            "rdev_builds", "Builds that entered each status (audit trail).", labels=["status"]
        )
        current = GaugeMetricFamily(
            "rdev_builds_current", "Builds in each status now.", labels=["status"]
        )
        for s in STATUSES:
            total.add_metric([s], d["transitions"].get(s, 0))
            current.add_metric([s], d["builds"].get(s, 0))
        yield total
        yield current
        yield GaugeMetricFamily(
            "rdev_queue_depth", "Builds waiting to be claimed.", value=d["queue_depth"]
        )
        yield GaugeMetricFamily(
            "rdev_queue_oldest_pending_age_seconds",
            "Age of the oldest claimable build (0 when the queue is empty).",
            value=d["oldest_age"],
        )
        yield GaugeMetricFamily(
            "rdev_workers_online", "Workers with a recent heartbeat.", value=d["workers_online"]
        )
        outbox = GaugeMetricFamily(
            "rdev_webhook_outbox", "Webhook deliveries by state.", labels=["state"]
        )
        for state in ("pending", "delivered", "dead"):
            outbox.add_metric([state], d["webhook_outbox"].get(state, 0))
        yield outbox


class Metrics:
    def __init__(
        self, *, stats: StatsSource, queue: QueueStatsSource, offline_after_seconds: float
    ) -> None:
        self.stats = stats
        self.queue = queue
        self.offline_after = offline_after_seconds
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "rdev_http_requests",
            "HTTP requests by route template and status code.",
            ["method", "route", "code"],
            registry=r,
        )
        self.claim_latency = Histogram(
            "rdev_claim_latency_seconds",
            "Time from a build entering the queue to a worker claiming it.",
            buckets=CLAIM_BUCKETS,
            registry=r,
        )
        self.build_duration = Histogram(
            "rdev_build_duration_seconds",
            "Build run time as the worker measured it.",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "rdev_webhook_deliveries",
            "Webhook delivery attempts by outcome.",
            ["outcome"],
            registry=r,
        )
        self._scrape = _ScrapeTime()
        r.register(self._scrape)
        _live.add(self)

    # -- counted as things happen -------------------------------------------------------
    def observe_request(self, method: str, route: str, code: int) -> None:
        self.http_requests.labels(method, route, str(code)).inc()

    def record_delivery(self, outcome: str) -> None:
        self.webhook_deliveries.labels((outcome or "unknown").lower()[:32]).inc()

    async def observe_claims(self, event: BuildsClaimed) -> None:
        """On BuildsClaimed: the claim latency of each freshly claimed build."""
        tasks = event.tasks
        since = {t.task_id: t.queued_at for t in tasks if t.queued_at is not None}
        missing = [t.task_id for t in tasks if t.queued_at is None]
        try:
            if missing:
                since.update(await self.stats.queued_since(missing))
        except Exception:  # metrics must never break a claim
            log.exception("claim latency lookup failed")
            return
        now = datetime.now(UTC)
        for at in since.values():
            self.claim_latency.observe(max(0.0, (now - at).total_seconds()))

    async def observe_completion(self, event: BuildFinished) -> None:
        """On BuildFinished: the duration of a build that reached a final status."""
        if event.status.is_final:
            duration = max(0, event.result.duration_ms) / 1000
            self.build_duration.labels(event.status.value).observe(duration)

    # -- read at scrape time --------------------------------------------------------------
    async def refresh(self) -> None:
        """Read the database figures; a failure is reported as rdev_metrics_database_up 0."""
        started = time.perf_counter()
        try:
            snap = await self.stats.snapshot(self.offline_after)
            q = await self.queue.queue_stats()
        except Exception as exc:  # noqa: BLE001 - a scrape still shows the in-process figures
            log.warning("metrics database read failed", error=str(exc))
            self._scrape.data = {"error": True}
            return
        oldest = q.get("oldest_available_at")
        age = 0.0
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        self._scrape.data = {
            **snap,
            "queue_depth": q.get("depth", 0),
            "oldest_age": age,
            "took": time.perf_counter() - started,
        }

    def render(self) -> bytes:
        return generate_latest(self.registry)
