"""Build overhead benchmark: a no-op build through rdev vs the same git work in a shell.

ours  — a real ``rdev serve`` (SQLite under a temp data dir by default, ``--postgres`` for a
        fresh PostgreSQL database) and a real ``rdev worker`` subprocess (``--embedded`` for
        the server's embedded worker). Each run submits a ``command`` agent build
        (RDEV_COMMAND_AGENT='date +%s.%N > stamp.txt', auto_commit + auto_push) and polls
        GET /builds/{id} until it is completed: submit -> observed completion, as a bot sees it.
floor — the same git work as plain commands in one ``bash -c``: ``git clone --depth 1``,
        write the file, ``git add``/``git commit``, ``git push``, remove the checkout.

Both sides use the same transport against the same kind of remote: by default the server's
own git smart-HTTP endpoint (/git, the local repo host; each side has its own repository
made by create-and-build from the ``blank`` template, token in an http.extraHeader), or with
``--transport file`` a bare repository on disk over file://. Runs are interleaved
(ours, floor, ours, floor, ...) after a warm-up, so machine noise hits both alike.
Only loopback traffic.

    .venv/bin/python bench/build_overhead.py [--runs 20] [--warmup 3] [--transport http|file]
                                             [--embedded] [--postgres] [--poll-ms 10]
"""

from __future__ import annotations

import sys

# bench/queue.py would shadow the stdlib `queue` module: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if not p.rstrip("/").endswith("bench")]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

ADMIN = "rdev_bench_admin_" + uuid.uuid4().hex
AGENT = "date +%s.%N > stamp.txt"  # unique each run, so every build has a change
PG = os.environ.get("RDEV_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
RDEV = [sys.executable, "-m", "rdev.cli"]

FLOOR_SCRIPT = """\
set -e
git clone -q --depth 1 --single-branch --no-tags --branch main -- "$REMOTE" "$CHECKOUT"
cd "$CHECKOUT"
date +%s.%N > stamp.txt
git add -A
git commit -q -m "floor run"
git push -q -- "$REMOTE" HEAD:main
cd /
rm -rf "$CHECKOUT"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def git_env(home: Path, token: str | None) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
        "GIT_AUTHOR_NAME": "floor",
        "GIT_AUTHOR_EMAIL": "floor@localhost",
        "GIT_COMMITTER_NAME": "floor",
        "GIT_COMMITTER_EMAIL": "floor@localhost",
    }
    if token:
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(
            GIT_CONFIG_COUNT="1",
            GIT_CONFIG_KEY_0="http.extraHeader",
            GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
        )
    return env


def bare_repo(root: Path, name: str) -> str:
    """A bare repository with one commit on main; returns its file:// URL."""
    bare, seed = root / f"{name}.git", root / f"{name}-seed"
    env = git_env(root, None)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], env=env, check=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], env=env, check=True)
    (seed / "README.md").write_text(f"# {name}\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "seed"], ["push", "-q", str(bare), "main"]):
        subprocess.run(["git", *args], cwd=seed, env=env, check=True)
    shutil.rmtree(seed)
    return f"file://{bare}"


def fresh_pg_database(name: str) -> str:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []

    # ---------------------------------------------------------------- processes
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RDEV_")}
        env.update(PYTHONUNBUFFERED="1", RDEV_LOG_LEVEL=self.args.log_level, **extra)
        return env

    def spawn(self, argv: list[str], env: dict[str, str], log_name: str) -> None:
        with open(self.tmp / log_name, "ab") as log:
            self.procs.append(
                subprocess.Popen(
                    argv,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )

    def start_server(self) -> None:
        extra = {
            "RDEV_DATA_DIR": str(self.tmp / "data"),
            "RDEV_ADMIN_TOKEN": ADMIN,
            "RDEV_EMBEDDED_WORKER": "1" if self.args.embedded else "0",
            "RDEV_COMMAND_AGENT": AGENT,
        }
        if self.args.postgres:
            extra["RDEV_DATABASE_URL"] = fresh_pg_database("rdev_bench_overhead")
        argv = [*RDEV, "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.spawn(argv, self.env(**extra), "server.log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise SystemExit("rdev serve exited:\n" + self.log("server.log"))
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit("rdev serve not ready:\n" + self.log("server.log"))

    def start_worker(self, token: str) -> None:
        argv = [*RDEV, "worker", "--server", self.url, "--token", token,
                "--name", "bench-worker", "--slots", "1",
                "--workdir", str(self.tmp / "work")]  # fmt: skip
        self.spawn(argv, self.env(RDEV_COMMAND_AGENT=AGENT), "worker.log")

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it left running
            proc.wait(timeout=10)

    # ---------------------------------------------------------------- set-up
    async def wait_done(self, api: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
        poll = self.args.poll_ms / 1000
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            build = (await api.get(f"/builds/{task_id}")).json()
            if build["status"] in ("completed", "failed", "cancelled"):
                return build  # type: ignore[no-any-return]
            await asyncio.sleep(poll)
        raise SystemExit(f"build {task_id} did not finish:\n{self.log('worker.log')}")

    async def create_project(self, api: httpx.AsyncClient, name: str) -> str:
        """A project for one side; returns its repository URL."""
        if self.args.transport == "file":
            url = bare_repo(self.tmp / "remotes", name)
            r = await api.post("/projects", json={"name": name, "repo_url": url})
            r.raise_for_status()
            return url
        r = await api.post("/project/create-and-build", json={
            "project": {"name": name, "template": "blank"},
            "build": {"prompt": "first stamp", "auto_commit": True, "auto_push": True},
        })  # fmt: skip
        r.raise_for_status()
        build = await self.wait_done(api, r.json()["task_id"])
        assert build["status"] == "completed", build
        return str(r.json()["project"]["repo_url"])

    # ---------------------------------------------------------------- one run each
    async def ours_once(self, api: httpx.AsyncClient) -> dict[str, float]:
        t0 = time.perf_counter()
        r = await api.post("/projects/ours/builds", json={
            "prompt": "stamp the date", "agent": "command",
            "auto_commit": True, "auto_push": True,
        })  # fmt: skip
        r.raise_for_status()
        build = await self.wait_done(api, r.json()["task_id"])
        elapsed = (time.perf_counter() - t0) * 1000
        if build["status"] != "completed" or not build["result"]["commit_sha"]:
            raise SystemExit(f"a build did not land a commit: {build}\n{self.log('worker.log')}")
        created = datetime.fromisoformat(build["created_at"])
        finished = datetime.fromisoformat(build["finished_at"])
        return {
            "e2e": elapsed,
            "server": (finished - created).total_seconds() * 1000,
            "executor": float(build["result"]["duration_ms"]),
        }

    def floor_once(self, remote: str, i: int) -> float:
        env = git_env(self.tmp, None if self.args.transport == "file" else ADMIN)
        env.update(REMOTE=remote, CHECKOUT=str(self.tmp / "floor" / f"run-{i}"))
        t0 = time.perf_counter()
        done = subprocess.run(["bash", "-c", FLOOR_SCRIPT], env=env, capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        elapsed = (time.perf_counter() - t0) * 1000
        if done.returncode != 0:
            raise SystemExit(f"floor run failed: {done.stderr.replace(ADMIN, '***')}")
        return elapsed

    async def run(self) -> None:
        a = self.args
        self.start_server()
        async with httpx.AsyncClient(
            base_url=self.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60
        ) as api:
            if not a.embedded:
                r = await api.post("/tokens", json={"name": "bench-worker",
                                                    "scopes": ["workers:run"]})  # fmt: skip
                r.raise_for_status()
                self.start_worker(r.json()["token"])
            await self.create_project(api, "ours")
            floor_remote = await self.create_project(api, "floor")
            (self.tmp / "floor").mkdir()

            for i in range(a.warmup):
                await self.ours_once(api)
                self.floor_once(floor_remote, -1 - i)
            ours: list[dict[str, float]] = []
            floor: list[float] = []
            for i in range(a.runs):
                ours.append(await self.ours_once(api))
                floor.append(self.floor_once(floor_remote, i))
        report(a, ours, floor)


def report(a: argparse.Namespace, ours: list[dict[str, float]], floor: list[float]) -> None:
    def line(label: str, values: list[float]) -> str:
        return (f"  {label:<48} median {statistics.median(values):7.1f} ms"
                f"   p90 {pct(values, 90):7.1f} ms")  # fmt: skip

    e2e = [o["e2e"] for o in ours]
    backend = "PostgreSQL" if a.postgres else "SQLite"
    worker = "embedded worker" if a.embedded else "rdev worker subprocess"
    remote = "server /git smart-HTTP" if a.transport == "http" else "bare repo over file://"
    print(f"build overhead: {a.runs} runs each after {a.warmup} warm-up, interleaved")
    print(f"  setup: rdev serve ({backend}) + {worker}; remote: {remote}; "
          f"agent: {AGENT!r}; poll {a.poll_ms:g} ms")  # fmt: skip
    print("ours (submit -> completed, through server and worker):")
    print(line("end to end, as the client sees it", e2e))
    print(line("server created_at -> finished_at", [o["server"] for o in ours]))
    print(line("executor duration_ms (clone+agent+commit+push)", [o["executor"] for o in ours]))
    print("floor (git clone --depth 1, write, add, commit, push, rm in one bash -c):")
    print(line("plain git in a shell", floor))
    ratio = statistics.median(e2e) / statistics.median(floor)
    ratio90 = pct(e2e, 90) / pct(floor, 90)
    extra = statistics.median(e2e) - statistics.median(floor)
    print(f"ratio ours/floor: median {ratio:.2f}x   p90 {ratio90:.2f}x   "
          f"(overhead {extra:+.1f} ms per build at the median)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--transport", choices=["http", "file"], default="http")
    ap.add_argument("--embedded", action="store_true", help="use the embedded worker")
    ap.add_argument("--postgres", action="store_true", help=f"fresh database on {PG}")
    ap.add_argument("--poll-ms", type=float, default=10.0, help="GET /builds/{id} interval")
    ap.add_argument("--log-level", default="INFO", help="RDEV_LOG_LEVEL of server and worker")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rdev-bench-overhead-"))
    bench = Bench(args, tmp)
    try:
        asyncio.run(bench.run())
    finally:
        bench.stop()
        if args.keep:
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
