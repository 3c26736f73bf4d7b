"""Queue benchmark on PostgreSQL: rdev through its HTTP worker protocol vs pgqueuer.

Starts a real `rdev serve` (uvicorn, no embedded worker) on a fresh database and measures:
  * drain: N no-op builds submitted first, then K concurrent HTTP worker clients claim
    (batches) and complete them; tasks/s from the first claim answer to the last
    acknowledged completion, after a warm-up drain; CPU per task of the server, the
    worker clients and PostgreSQL;
  * idle latency: one long-polling worker waits; a build is submitted; the time from the
    submit call to the claim answer; p50/p99 over M samples;
  * the HTTP floor: GET /healthz after the same 20 ms pause (on this VM an idle process
    takes milliseconds to wake, so no HTTP path can answer faster than this).
Then the same two measurements with pgqueuer (a bench-only extra) on the same PostgreSQL,
with each of its drivers (asyncpg, its fastest, and psycopg, the driver rdev uses), and
prints the ratios. pgqueuer's psycopg driver holds its connection in a 1 s notifies()
wait, so its idle latency is about 1 s: compare latency with the asyncpg figures.

    .venv/bin/python bench/queue.py [--tasks 5000] [--workers 16] [--batch 100]
        [--samples 200] [--warmup 2000] [--replicas 1] [--pgqueuer-drivers asyncpg,psycopg]
"""

from __future__ import annotations

import sys

# This file is named queue.py: keep its folder off sys.path so stdlib `queue` still imports.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("bench")]

import argparse  # noqa: E402
import asyncio
import contextlib
import os
import socket
import subprocess  # noqa: E402
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg

PG = os.environ.get("RDEV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
ADMIN = "rdev_bench_admin_token_0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fresh_database(name: str) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}"


async def wait_healthy(base: str) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as c:
        for _ in range(300):
            try:
                if (await c.get("/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{base} did not come up")


def cpu_seconds(pids: list[int] | None = None) -> float:
    """CPU time (user + system) used so far by ``pids``, or by all PostgreSQL processes."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or (pids is not None and int(entry) not in pids):
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if pids is None:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if not f.read().startswith(b"postgres"):
                        continue
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


class CpuMeter:
    """CPU µs per task spent by the server processes, this bench process and PostgreSQL."""

    def __init__(self, server_pids: list[int]) -> None:
        self.server_pids = server_pids

    def start(self) -> None:
        self.t0 = (cpu_seconds(self.server_pids), time.process_time(), cpu_seconds())

    def stop(self, tasks: int) -> dict[str, float]:
        server, client, pg = (cpu_seconds(self.server_pids), time.process_time(), cpu_seconds())
        return {
            "cpu_server_us": (server - self.t0[0]) / tasks * 1e6,
            "cpu_client_us": (client - self.t0[1]) / tasks * 1e6,
            "cpu_pg_us": (pg - self.t0[2]) / tasks * 1e6,
        }


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(q / 100 * (len(values) - 1))))
    return values[k]


# --------------------------------------------------------------------------- rdev
def succeeded(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of ``POST /workers/{id}/complete`` reporting success for ``tasks``."""
    return {
        "items": [
            {"task_id": t["task_id"], "lease_token": t["lease_token"], "result": {"success": True}}
            for t in tasks
        ]
    }


@contextlib.asynccontextmanager
async def rdev_servers(replicas: int = 1) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``replicas`` real `rdev serve` processes (no embedded worker) on one fresh database.

    The first one migrates; each is healthy when this yields; all are stopped after.
    Their URLs are ``server_url(p)`` for each process ``p``.
    """
    dsn = fresh_database("rdev_bench")
    ports = [free_port() for _ in range(replicas)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
    env.update(
        RDEV_DATABASE_URL=dsn.replace("postgresql://", "postgresql+psycopg://"),
        RDEV_DATA_DIR=f"/tmp/rdev-bench-{ports[0]}",
        RDEV_ADMIN_TOKEN=ADMIN,
        RDEV_EMBEDDED_WORKER="0",
        RDEV_LOG_LEVEL="WARNING",
    )
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for p in ports:
            command = [sys.executable, "-m", "rdev.cli", "serve", "--host", "127.0.0.1"]
            servers.append(
                subprocess.Popen(
                    [*command, "--port", str(p)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            if len(servers) == 1:
                await wait_healthy(server_url(servers[0]))
        for server in servers[1:]:
            await wait_healthy(server_url(server))
        yield servers
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=20)


def server_url(server: subprocess.Popen[bytes]) -> str:
    return f"http://127.0.0.1:{server.args[-1]}"  # type: ignore[index]


async def rdev_bench(args: argparse.Namespace) -> dict[str, float]:
    # N API replicas on one database (the scale-out shape).
    async with rdev_servers(args.replicas) as servers:
        return await drive_rdev(args, servers)


async def drive_rdev(
    args: argparse.Namespace, servers: list[subprocess.Popen[bytes]]
) -> dict[str, float]:
    bases = [server_url(p) for p in servers]
    base = bases[0]
    async with httpx.AsyncClient(
        base_url=base,
        timeout=60,
        headers={"Authorization": f"Bearer {ADMIN}"},
        limits=httpx.Limits(max_connections=64),
    ) as api:
        await api.post("/projects", json={"name": "bench", "repo_url": "file:///x"})
        wtoken = (await api.post("/tokens", json={"name": "w", "scopes": ["workers:run"]})).json()[
            "token"
        ]

        async def submit_many(n: int) -> None:
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> None:
                async with sem:
                    r = await api.post("/projects/bench/builds", json={"prompt": f"t{i}"})
                    r.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(n)))

        async def drain(n: int) -> dict[str, float]:
            """K worker clients drain ``n`` queued builds; rate and CPU of the drain only.

            Clients are made and workers registered first; the clock runs from the first
            claim answer to the last acknowledged completion.
            """
            done, stop, first = [0], asyncio.Event(), []
            batches: list[int] = []  # tasks per claim answer
            ready: list[str] = []
            all_ready, go = asyncio.Event(), asyncio.Event()
            ended: list[float] = []
            cpu: dict[str, float] = {}
            meter = CpuMeter([s.pid for s in servers])

            async def worker(i: int) -> None:
                async with httpx.AsyncClient(
                    base_url=bases[i % len(bases)],
                    timeout=60,
                    headers={"Authorization": f"Bearer {wtoken}"},
                ) as w:
                    wid = (
                        await w.post(
                            "/workers/register",
                            json={"name": f"bench-{i}", "agents": ["command"], "slots": 64},
                        )
                    ).json()["worker_id"]
                    ready.append(wid)
                    if len(ready) == args.workers:
                        all_ready.set()
                    await go.wait()
                    while not stop.is_set():
                        r = await w.post(
                            f"/workers/{wid}/claim",
                            json={"max_tasks": args.batch, "wait_seconds": 0.5},
                        )
                        tasks = r.json()
                        batches.append(len(tasks))
                        if not tasks:
                            if done[0] >= n:
                                stop.set()
                            continue
                        if not first:
                            first.append(time.perf_counter())
                        r = await w.post(f"/workers/{wid}/complete", json=succeeded(tasks))
                        r.raise_for_status()
                        done[0] += len(tasks)
                        if done[0] >= n and not stop.is_set():
                            ended.append(time.perf_counter())
                            cpu.update(meter.stop(n))
                            stop.set()

            running = asyncio.gather(*(worker(i) for i in range(args.workers)))
            await all_ready.wait()
            meter.start()
            go.set()
            await running
            full = [b for b in batches if b]
            return {
                "drain_rate": n / (ended[0] - first[0]),
                "claims": len(batches),
                "mean_batch": sum(full) / max(1, len(full)),
                **cpu,
            }

        if args.warmup:  # a warm server: pooled connections, prepared statements
            await submit_many(args.warmup)
            await drain(args.warmup)
        t0 = time.perf_counter()
        await submit_many(args.tasks)
        submit_rate = args.tasks / (time.perf_counter() - t0)
        drained = await drain(args.tasks)

        # idle latency: one long-polling worker; submit; time until the claim answers
        lat: list[float] = []
        submit_lat: list[float] = []  # the submit POST's own answer, for reference
        async with httpx.AsyncClient(
            base_url=base, timeout=60, headers={"Authorization": f"Bearer {wtoken}"}
        ) as w:
            wid = (
                await w.post(
                    "/workers/register",
                    json={"name": "idle", "agents": ["command"], "slots": 1},
                )
            ).json()["worker_id"]
            for i in range(args.samples):
                claim = asyncio.create_task(
                    w.post(f"/workers/{wid}/claim", json={"max_tasks": 1, "wait_seconds": 30})
                )
                await asyncio.sleep(0.02)  # let the claim reach its wait
                t0 = time.perf_counter()
                await api.post("/projects/bench/builds", json={"prompt": f"l{i}"})
                submit_lat.append((time.perf_counter() - t0) * 1000)
                [task] = (await claim).json()
                lat.append((time.perf_counter() - t0) * 1000)
                await w.post(f"/workers/{wid}/complete", json=succeeded([task]))
        # The floor for any HTTP path on this machine: a no-op request after the same pause.
        floor: list[float] = []
        for _ in range(args.samples):
            await asyncio.sleep(0.02)
            t0 = time.perf_counter()
            await api.get("/healthz")
            floor.append((time.perf_counter() - t0) * 1000)
    return {
        "http_floor_p50": pct(floor, 50),
        "http_floor_p99": pct(floor, 99),
        "submit_rate": submit_rate,
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "submit_p50": pct(submit_lat, 50),
        **drained,
    }


# --------------------------------------------------------------------------- pgqueuer
async def pgqueuer_bench(args: argparse.Namespace, driver: str) -> dict[str, float]:
    """pgqueuer's own drain and idle latency, with its asyncpg or its psycopg driver.

    Each measurement gets its own connections; the enqueues go through a separate one.
    """
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver, PsycopgDriver
    from pgqueuer.queries import Queries

    dsn = fresh_database("rdev_bench_pgq")

    async def connect() -> tuple[Any, Any]:
        if driver == "asyncpg":
            conn = await asyncpg.connect(dsn)
            return conn, AsyncpgDriver(conn)
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        return conn, PsycopgDriver(conn)

    setup, setup_driver = await connect()
    queries = Queries(setup_driver)
    await queries.install()

    async def drain(n: int, conn: Any, drv: Any) -> dict[str, float]:
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
        done = [0]
        first: list[float] = []
        finished = asyncio.Event()
        pgq = PgQueuer(drv)

        @pgq.entrypoint("noop")
        async def noop(job) -> None:  # type: ignore[no-untyped-def]
            if not first:
                first.append(time.perf_counter())
            done[0] += 1
            if done[0] >= n:
                finished.set()

        meter = CpuMeter([])
        meter.start()
        runner = asyncio.create_task(pgq.run(batch_size=args.batch))
        await finished.wait()
        rate = n / (time.perf_counter() - first[0])
        cpu = meter.stop(n)  # (includes pgqueuer's start-up, a few ms)
        pgq.shutdown.set()
        await asyncio.wait_for(runner, 30)
        return {"drain_rate": rate, **cpu}

    conn, drv = await connect()
    if args.warmup:  # the same warm-up as rdev gets, on the same connection
        await drain(args.warmup, conn, drv)
    drained = await drain(args.tasks, conn, drv)
    await conn.close()

    # idle latency
    conn, drv = await connect()
    pgq = PgQueuer(drv)
    got: asyncio.Queue[float] = asyncio.Queue()

    @pgq.entrypoint("ping")
    async def ping(job) -> None:  # type: ignore[no-untyped-def]
        got.put_nowait(time.perf_counter())

    runner = asyncio.create_task(pgq.run())
    await asyncio.sleep(1.0)
    lat = []
    for _ in range(args.samples):
        await asyncio.sleep(0.02)
        t0 = time.perf_counter()
        await queries.enqueue(["ping"], [None], [0])
        lat.append((await asyncio.wait_for(got.get(), 30) - t0) * 1000)
    pgq.shutdown.set()
    await asyncio.wait_for(runner, 30)
    await conn.close()
    await setup.close()
    return {"p50": pct(lat, 50), "p99": pct(lat, 99), **drained}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=2000, help="tasks drained before measuring")
    ap.add_argument("--replicas", type=int, default=1, help="rdev serve processes (one DB)")
    ap.add_argument("--skip-pgqueuer", action="store_true")
    ap.add_argument(
        "--pgqueuer-drivers",
        default="asyncpg,psycopg",
        help="pgqueuer drivers to compare with (asyncpg is its fastest)",
    )
    args = ap.parse_args()
    ours = await rdev_bench(args)
    print(
        f"rdev (HTTP worker protocol, {args.workers} workers, batch {args.batch}, "
        f"{args.replicas} API replica(s)):"
    )
    print(f"  submit      {ours['submit_rate']:8.0f} builds/s (HTTP POST, 16 concurrent)")
    print(f"  drain       {ours['drain_rate']:8.0f} tasks/s (claim + complete, no-op)")
    print(
        f"  claims      {ours['claims']:8.0f} answers, {ours['mean_batch']:.0f} tasks per "
        "non-empty answer"
    )
    print(
        f"  drain CPU per task: server {ours['cpu_server_us']:.0f} us, worker clients "
        f"{ours['cpu_client_us']:.0f} us, PostgreSQL {ours['cpu_pg_us']:.0f} us"
    )
    print(f"  idle latency p50 {ours['p50']:.1f} ms  p99 {ours['p99']:.1f} ms (submit -> claim)")
    print(f"  (of which the submit POST's own answer: p50 {ours['submit_p50']:.1f} ms)")
    print(
        f"  HTTP floor  p50 {ours['http_floor_p50']:.1f} ms  p99 {ours['http_floor_p99']:.1f} ms"
        " (GET /healthz after the same 20 ms pause)"
    )
    if args.skip_pgqueuer:
        return
    for driver in args.pgqueuer_drivers.split(","):
        theirs = await pgqueuer_bench(args, driver)
        print(f"pgqueuer (same PostgreSQL, its {driver} driver, batch {args.batch}):")
        print(f"  drain       {theirs['drain_rate']:8.0f} jobs/s")
        print(
            f"  drain CPU per job: pgqueuer {theirs['cpu_client_us']:.0f} us, "
            f"PostgreSQL {theirs['cpu_pg_us']:.0f} us"
        )
        print(
            f"  idle latency p50 {theirs['p50']:.1f} ms  p99 {theirs['p99']:.1f} ms"
            " (enqueue -> run)"
        )
        print(f"ratios (rdev / pgqueuer-{driver}):")
        print(f"  throughput  {ours['drain_rate'] / theirs['drain_rate']:.2f}x (goal >= 1.0)")
        p50, p99 = ours["p50"] / theirs["p50"], ours["p99"] / theirs["p99"]
        print(f"  latency p50 {p50:.2f}x  p99 {p99:.2f}x (goal < 1.0)")


if __name__ == "__main__":
    asyncio.run(main())
