"""/metrics: Prometheus text that the official parser reads, and figures that move."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rdev.bootstrap import Container
from rdev.services.metrics import record_delivery
from tests.factories import create_project, register_worker, submit


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}, parsed by prometheus_client."""
    r = await client.get("/metrics", headers={"authorization": ""})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(m: dict, name: str, **labels: str) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


async def run_build(client: httpx.AsyncClient, project: str, worker: str, success: bool) -> str:
    task_id = (await submit(client, project))["task_id"]
    r = await client.post(f"/workers/{worker}/claim", json={"max_tasks": 1, "wait_seconds": 5})
    lease = r.json()[0]["lease_token"]
    r = await client.post(
        f"/builds/{task_id}/logs", json={"lease_token": lease, "chunks": [{"text": "hello"}]}
    )
    assert r.status_code == 200
    r = await client.post(
        f"/workers/{worker}/complete/{task_id}",
        json={
            "lease_token": lease,
            "result": {
                "success": success,
                "duration_ms": 2500,
                "error": None if success else "boom",
            },
        },
    )
    assert r.status_code == 200, r.text
    return task_id


async def test_metrics_parse_without_a_token_and_name_every_family(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/metrics", headers={"authorization": ""})
    assert r.status_code == 200
    names = {f.name for f in text_string_to_metric_families(r.text)}
    for expected in (
        "rdev_builds",
        "rdev_builds_current",
        "rdev_queue_depth",
        "rdev_queue_oldest_pending_age_seconds",
        "rdev_claim_latency_seconds",
        "rdev_build_duration_seconds",
        "rdev_workers_online",
        "rdev_webhook_deliveries",
        "rdev_webhook_outbox",
        "rdev_http_requests",
        "rdev_metrics_database_up",
    ):
        assert expected in names, (expected, sorted(names))


async def test_build_counters_and_histograms_move_when_builds_run(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    project = (await create_project(client))["id"]
    worker = await register_worker(client)
    tasks = [
        await run_build(client, project, worker, success=True),
        await run_build(client, project, worker, success=False),
    ]
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return val(after, name, **labels) - val(before, name, **labels)

    assert moved("rdev_builds_total", status="pending") == 2
    assert moved("rdev_builds_total", status="running") == 2
    assert moved("rdev_builds_total", status="completed") == 1
    assert moved("rdev_builds_total", status="failed") == 1
    assert val(after, "rdev_builds_current", status="completed") == 1
    assert moved("rdev_claim_latency_seconds_count") == 2
    assert moved("rdev_build_duration_seconds_count", status="completed") == 1
    assert moved("rdev_build_duration_seconds_sum", status="failed") == 2.5
    assert val(after, "rdev_workers_online") == 1
    assert (
        moved("rdev_http_requests_total", method="POST", route="/builds/{task_id}/logs", code="200")
        == 2
    )
    assert (
        moved(
            "rdev_http_requests_total",
            method="POST",
            route="/workers/{worker_id}/complete/{task_id}",
            code="200",
        )
        == 2
    )
    # Route templates, never raw ids, label the HTTP counter.
    routes = {
        dict(labels).get("route", "")
        for (name, labels) in after
        if name == "rdev_http_requests_total"
    }
    assert not any(task_id in r or worker in r for r in routes for task_id in tasks)


async def test_queue_gauges_follow_pending_builds(client: httpx.AsyncClient) -> None:
    project = (await create_project(client))["id"]
    await submit(client, project)
    await submit(client, project)
    m = await scrape(client)
    assert val(m, "rdev_queue_depth") == 2
    assert val(m, "rdev_queue_oldest_pending_age_seconds") >= 0
    worker = await register_worker(client)
    r = await client.post(f"/workers/{worker}/claim", json={"max_tasks": 2, "wait_seconds": 5})
    assert len(r.json()) == 2
    m = await scrape(client)
    assert val(m, "rdev_queue_depth") == 0
    assert val(m, "rdev_queue_oldest_pending_age_seconds") == 0


async def test_unmatched_paths_share_one_label(client: httpx.AsyncClient) -> None:
    for i in range(3):
        await client.get(f"/no/such/path/{i}")
    m = await scrape(client)
    assert val(m, "rdev_http_requests_total", method="GET", route="unmatched", code="404") == 3


async def test_webhook_delivery_outcomes_are_counted(
    client: httpx.AsyncClient, container: Container
) -> None:
    record_delivery("delivered")
    record_delivery("delivered")
    container.metrics.record_delivery("dead")
    m = await scrape(client)
    assert val(m, "rdev_webhook_deliveries_total", outcome="delivered") == 2
    assert val(m, "rdev_webhook_deliveries_total", outcome="dead") == 1
