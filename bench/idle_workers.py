"""Benchmark: what a submit costs while many workers long-poll one server (PostgreSQL).

Starts a real `rdev serve` on a fresh database, registers N workers that each keep one
long-polling claim open, then submits builds one at a time (50 ms apart) and measures
submit -> claim latency and the server's and PostgreSQL's CPU per submit. With a wake-up
per waiter this grows with N; with one targeted wake-up per build it should not.

    .venv/bin/python bench/idle_workers.py [--workers 200] [--submits 50]
"""

from __future__ import annotations

import sys

# bench/queue.py would shadow the stdlib `queue`: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("bench")]

import argparse  # noqa: E402
import asyncio
import importlib.util
import time
from pathlib import Path

import httpx

# Reuse the queue benchmark's helpers (fresh database, ports, CPU meter, percentiles).
_spec = importlib.util.spec_from_file_location("queue_bench", Path(__file__).with_name("queue.py"))
assert _spec and _spec.loader
qb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(qb)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=200)
    ap.add_argument("--submits", type=int, default=50)
    args = ap.parse_args()

    async with qb.rdev_servers() as [server]:
        base = qb.server_url(server)
        admin = {"Authorization": f"Bearer {qb.ADMIN}"}
        async with httpx.AsyncClient(base_url=base, headers=admin, timeout=60) as api:
            await api.post("/projects", json={"name": "bench", "repo_url": "file:///x"})
            token = (
                await api.post("/tokens", json={"name": "w", "scopes": ["workers:run"]})
            ).json()["token"]
            async with httpx.AsyncClient(
                base_url=base,
                headers={"Authorization": f"Bearer {token}"},
                timeout=60,
                limits=httpx.Limits(max_connections=args.workers + 10),
            ) as w:
                wids = [
                    (
                        await w.post(
                            "/workers/register",
                            json={"name": f"idle-{i}", "agents": ["command"], "slots": 1},
                        )
                    ).json()["worker_id"]
                    for i in range(args.workers)
                ]
                claimed: asyncio.Queue[float] = asyncio.Queue()

                async def poll(wid: str) -> None:
                    while True:
                        r = await w.post(
                            f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 30}
                        )
                        r.raise_for_status()
                        for t in r.json():
                            claimed.put_nowait(time.perf_counter())
                            await w.post(f"/workers/{wid}/complete", json=qb.succeeded([t]))

                pollers = [asyncio.create_task(poll(wid)) for wid in wids]
                await asyncio.sleep(2)  # every claim is waiting
                meter = qb.CpuMeter([server.pid])
                meter.start()
                lat = []
                for i in range(args.submits):
                    await asyncio.sleep(0.05)
                    t0 = time.perf_counter()
                    await api.post("/projects/bench/builds", json={"prompt": f"i{i}"})
                    lat.append((await asyncio.wait_for(claimed.get(), 30) - t0) * 1000)
                cpu = meter.stop(args.submits)
                for p in pollers:
                    p.cancel()
        print(f"{args.workers} idle long-polling workers, {args.submits} submits 50 ms apart:")
        print(f"  submit -> claim p50 {qb.pct(lat, 50):.1f} ms  p99 {qb.pct(lat, 99):.1f} ms")
        print(
            f"  CPU per submit: server {cpu['cpu_server_us'] / 1000:.1f} ms, "
            f"PostgreSQL {cpu['cpu_pg_us'] / 1000:.1f} ms"
        )


if __name__ == "__main__":
    asyncio.run(main())
