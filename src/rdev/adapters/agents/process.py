"""The subprocess runner every agent adapter uses.

An agent CLI runs code nobody reviewed, in its own process group (``start_new_session``),
with a minimal environment (``env -i`` style) and stdin from /dev/null. Its stdout is read
line by line as it comes, so progress streams live. A timeout, a cancel, or a caller's
request to stop (e.g. a budget) ends it by signalling the whole process group: SIGINT,
then SIGTERM after a short grace, then SIGKILL.

The CLIs' tool processes (Claude's and OpenCode's bash tool) run in sessions of their own,
so a group signal does not reach them and OpenCode leaves them running (docs/agent-clis.md
§1.7, §2.6; this runner is §4.1). The runner therefore records every descendant of the agent
(a /proc scan, repeated while the agent runs) and SIGKILLs the ones still alive at the end,
whichever way the run ended.

A daemon (``(setsid server &)``, ``nohup``, a double fork) leaves the tree between two
scans: its parent exits and it is re-parented to init. Each run therefore also puts a tag
unique to it in the environment (``RDEV_RUN_TAG``), which children inherit, and at the end
every process still carrying the tag is killed as well. Partial output is always kept.

:func:`agent_result` is the one mapping from a :class:`ProcessOutcome` to the port's
``AgentResult``: every adapter's run ends with it, so a start error, a cancel and a timeout
read the same whichever agent ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rdev.ports.agents import AgentResult

#: Returned by a line callback to ask the runner to stop the agent (e.g. budget exceeded).
STOP = "stop"

LineCallback = Callable[[str], Awaitable[str | None]]

_READ_CHUNK = 65536
_MAX_LINE_BYTES = 4 * 1024 * 1024
_SCAN_INTERVAL_S = 1.0
#: The environment variable holding the run's tag (see the module docstring).
RUN_TAG_VAR = "RDEV_RUN_TAG"
_SWEEP_ROUNDS = 5


@dataclass
class ProcessOutcome:
    """What happened to one agent process. ``returncode`` is None only if it never started."""

    returncode: int | None
    stdout_lines: list[str] = field(default_factory=list)
    stderr_tail: str = ""
    timed_out: bool = False
    cancelled: bool = False
    #: The line callback returned STOP.
    stopped: bool = False
    pid: int | None = None
    duration_seconds: float = 0.0
    start_error: str | None = None


#: An adapter's rule for a process that ran to its end: it may change ``result`` (success,
#: error) given the outcome and the last line the process wrote to stderr (None: nothing).
ExitRule = Callable[[AgentResult, ProcessOutcome, str | None], None]


def format_seconds(seconds: float) -> str:
    """``30`` -> ``30s``, ``0.5`` -> ``0.5s`` (for "timeout after ..." errors)."""
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{seconds:g}s"


def last_stderr_line(outcome: ProcessOutcome) -> str | None:
    """The last line of the kept stderr tail that holds more than whitespace, or None."""
    lines = outcome.stderr_tail.strip().splitlines()
    return lines[-1] if lines else None


def agent_result(
    outcome: ProcessOutcome,
    result: AgentResult,
    *,
    timeout_seconds: float,
    exited: ExitRule | None = None,
    scrub: Callable[[str], str] | None = None,
) -> AgentResult:
    """Lay the process outcome over ``result`` (what the agent's own output said) and
    return it.

    A start error, a cancel and a timeout win over whatever the agent printed: the run
    failed for that reason (``cancelled`` / ``timed_out`` set). A process that ran to its
    end is judged by the adapter's ``exited`` rule. Last, ``scrub`` is applied to the
    output and the error, so no path leaves an unscrubbed message.
    """
    if outcome.start_error:
        result.success, result.error = False, outcome.start_error
    elif outcome.cancelled:
        result.success, result.cancelled, result.error = False, True, "cancelled"
    elif outcome.timed_out:
        result.success, result.timed_out = False, True
        result.error = f"timeout after {format_seconds(timeout_seconds)}"
    elif exited is not None:
        exited(result, outcome, last_stderr_line(outcome))
    if scrub is not None:
        result.output = scrub(result.output)
        result.error = scrub(result.error) if result.error else None
    return result


def minimal_env(home: Path, tmpdir: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``env -i`` style environment: PATH, HOME, TMPDIR, TERM=dumb, a UTF-8 locale,
    then ``extra`` (which wins)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(tmpdir),
        "TERM": "dumb",
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
    }
    env.update(extra or {})
    return env


# --- process tree bookkeeping ---------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(ppid, state, starttime) of a live process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return int(fields[1]), fields[0], fields[19]
    except (IndexError, ValueError):
        return None


def _descendants(root: int) -> dict[int, str]:
    """Every live descendant of ``root``: pid -> starttime (to tell a reused pid apart)."""
    children: dict[int, list[tuple[int, str]]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            st = _stat(int(entry.name))
            if st is not None:
                children.setdefault(st[0], []).append((int(entry.name), st[2]))
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def _tagged(entry: bytes) -> dict[int, str]:
    """Every live process whose environment holds ``entry`` (``NAME=value``): pid -> starttime.

    /proc/<pid>/environ is the environment the process was started with, so it survives
    re-parenting and new sessions; other users' processes are unreadable and skipped.
    """
    found: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for proc_entry in os.scandir("/proc"):
            if not proc_entry.name.isdigit():
                continue
            try:
                environ = Path(f"/proc/{proc_entry.name}/environ").read_bytes()
            except OSError:
                continue
            if entry in environ and entry in environ.split(b"\0"):
                st = _stat(int(proc_entry.name))
                if st is not None and st[1] != "Z":
                    found[int(proc_entry.name)] = st[2]
    return found


def _alive(pid: int, start: str) -> bool:
    st = _stat(pid)
    return st is not None and st[2] == start and st[1] != "Z"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _kill_recorded(recorded: dict[int, str]) -> None:
    """SIGKILL each recorded process that is still the same live process, and its group
    (the CLIs' tool shells lead groups of their own)."""
    for pid, start in list(recorded.items()):
        if not _alive(pid, start):
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)


async def _sweep(root: int, tag: bytes, recorded: dict[int, str]) -> None:
    """Kill the agent's group, everything recorded, and everything still carrying the
    run's tag, until no tagged process is left (a dying daemon may fork once more)."""
    recorded.update(_descendants(root))
    _signal_group(root, signal.SIGKILL)
    for _ in range(_SWEEP_ROUNDS):
        recorded.update(_tagged(tag))
        if not any(_alive(pid, start) for pid, start in recorded.items()):
            return
        _kill_recorded(recorded)
        await asyncio.sleep(0.05)


async def _wait_gone(recorded: dict[int, str], limit: float) -> None:
    """Poll /proc (no event exists for "a process that is not our child died")."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not any(_alive(p, s) for p, s in recorded.items()):
            return
        await asyncio.sleep(0.05)


async def _leader_exited(proc: asyncio.subprocess.Process) -> None:
    """Returns when the agent process itself has exited.

    ``Process.wait()`` is no use here: on Python 3.11 it also waits for the pipes to
    close, which a background job that inherited stdout delays forever. A pidfd becomes
    readable on exit; without pidfd support, poll the return code.
    """
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        while proc.returncode is None:
            st = _stat(proc.pid)
            if st is None or st[1] == "Z":
                return
            await asyncio.sleep(0.1)
        return
    readable: asyncio.Future[None] = loop.create_future()

    def on_readable() -> None:
        if not readable.done():
            readable.set_result(None)

    loop.add_reader(fd, on_readable)
    try:
        await readable
    finally:
        loop.remove_reader(fd)
        os.close(fd)


# --- the runner -----------------------------------------------------------------------


async def run_agent_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout_seconds: float,
    cancel: asyncio.Event,
    on_line: LineCallback | None = None,
    on_stderr_line: LineCallback | None = None,
    stdin_data: bytes | None = None,
    sigint_grace_seconds: float = 2.0,
    sigterm_grace_seconds: float = 2.0,
    max_stdout_bytes: int = 8 * 1024 * 1024,
    stderr_tail_bytes: int = 16 * 1024,
) -> ProcessOutcome:
    """Run ``argv`` to its end, the timeout, a cancel, or a STOP from ``on_line``.

    ``on_line`` gets each stdout line as it comes, ``on_stderr_line`` each stderr line; either
    may return STOP. ``stdin_data`` is written to stdin and then stdin is closed; without it
    stdin is /dev/null. The last ``max_stdout_bytes`` of stdout are kept as lines. Never raises for
    the agent's own failures; a binary that cannot start gives ``start_error``.
    """
    started = time.monotonic()
    run_tag = secrets.token_hex(16)
    tag = f"{RUN_TAG_VAR}={run_tag}".encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=str(cwd),
            env={**env, RUN_TAG_VAR: run_tag},
            stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return ProcessOutcome(returncode=None, start_error=f"cannot start {argv[0]}: {exc}")

    outcome = ProcessOutcome(returncode=None, pid=proc.pid)
    lines: deque[str] = deque()
    kept_bytes = 0
    stderr_buf = bytearray()
    stop_requested = asyncio.Event()
    recorded: dict[int, str] = {proc.pid: (_stat(proc.pid) or (0, "", ""))[2]}

    async def feed_stdin() -> None:
        assert proc.stdin is not None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin_data or b"")
            await proc.stdin.drain()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.close()

    async def deliver(callback: LineCallback | None, line: str) -> None:
        if callback is None or stop_requested.is_set():
            return
        try:
            verdict = await callback(line)
        except Exception:  # noqa: BLE001 - a sink failure must not leak the process
            verdict = None
        if verdict == STOP:
            stop_requested.set()

    async def handle_stdout(raw: bytes) -> None:
        nonlocal kept_bytes
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        lines.append(line)
        kept_bytes += len(line) + 1
        while kept_bytes > max_stdout_bytes and len(lines) > 1:
            kept_bytes -= len(lines.popleft()) + 1
        await deliver(on_line, line)

    async def handle_stderr(raw: bytes) -> None:
        stderr_buf.extend(raw + b"\n")
        if len(stderr_buf) > stderr_tail_bytes:
            del stderr_buf[: len(stderr_buf) - stderr_tail_bytes]
        await deliver(on_stderr_line, raw.decode("utf-8", errors="replace").rstrip("\r"))

    async def pump(
        stream: asyncio.StreamReader | None, handle: Callable[[bytes], Awaitable[None]]
    ) -> None:
        assert stream is not None
        pending = b""
        while True:
            chunk = await stream.read(_READ_CHUNK)
            if not chunk:
                break
            pending += chunk
            while b"\n" in pending:
                raw, pending = pending.split(b"\n", 1)
                await handle(raw[:_MAX_LINE_BYTES])
            if len(pending) > _MAX_LINE_BYTES:
                await handle(pending[:_MAX_LINE_BYTES])
                pending = b""
        if pending:
            await handle(pending)

    async def record_tree() -> None:
        while True:
            recorded.update(_descendants(proc.pid))
            await asyncio.sleep(_SCAN_INTERVAL_S)

    tasks = [
        asyncio.create_task(pump(proc.stdout, handle_stdout)),
        asyncio.create_task(pump(proc.stderr, handle_stderr)),
    ]
    if stdin_data is not None:
        tasks.append(asyncio.create_task(feed_stdin()))
    recorder = asyncio.create_task(record_tree())
    exited = asyncio.create_task(_leader_exited(proc))
    cancel_wait = asyncio.create_task(cancel.wait())
    stop_wait = asyncio.create_task(stop_requested.wait())
    try:
        done, _ = await asyncio.wait(
            {exited, cancel_wait, stop_wait},
            timeout=max(timeout_seconds, 0.0),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if exited not in done:
            if cancel_wait in done:
                outcome.cancelled = True
            elif stop_wait in done:
                outcome.stopped = True
            else:
                outcome.timed_out = True
            await _terminate(proc, exited, recorded, sigint_grace_seconds, sigterm_grace_seconds)
        # The agent exited: whatever it left behind (background jobs, tool shells,
        # daemons) goes.
        await _sweep(proc.pid, tag, recorded)
        # Leftovers held the pipes open until now; give the readers a moment to drain.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5.0)
        await _wait_gone(recorded, 5.0)
    finally:
        for task in (*tasks, recorder, cancel_wait, stop_wait):
            task.cancel()
        if not exited.done():  # only when we are cancelled ourselves: do not leak
            exited.cancel()
            _signal_group(proc.pid, signal.SIGKILL)
            recorded.update(_tagged(tag))
            _kill_recorded(recorded)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(proc.wait(), 5.0)
    outcome.returncode = proc.returncode
    outcome.stdout_lines = list(lines)
    outcome.stderr_tail = stderr_buf.decode("utf-8", errors="replace")
    outcome.duration_seconds = time.monotonic() - started
    return outcome


async def _terminate(
    proc: asyncio.subprocess.Process,
    exited: asyncio.Task[None],
    recorded: dict[int, str],
    sigint_grace: float,
    sigterm_grace: float,
) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the group, each after its grace. The
    descendants are recorded before each signal, while they are still in the tree; the
    caller's sweep kills them."""
    steps = ((signal.SIGINT, sigint_grace), (signal.SIGTERM, sigterm_grace), (signal.SIGKILL, 5.0))
    for sig, grace in steps:
        recorded.update(_descendants(proc.pid))
        _signal_group(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), grace)
            return
