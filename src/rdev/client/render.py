"""Human output: tables, build summaries, log lines, the live status line.

Colours and the live line appear only on a terminal (rich decides; NO_COLOR is honoured).
Text that an agent or a bot wrote is printed literally: no rich markup is interpreted and
terminal control characters are removed, so a log line cannot drive the terminal.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(text: Any) -> str:
    """Literal text without terminal control characters (tabs and newlines stay)."""
    return _CONTROL.sub("", "" if text is None else str(text))


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def ago(value: str | None) -> str:
    at = parse_time(value)
    if at is None:
        return "-"
    return f"{duration((datetime.now(UTC) - at).total_seconds())} ago"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def build_duration(b: dict[str, Any]) -> str:
    start, end = parse_time(b.get("started_at")), parse_time(b.get("finished_at"))
    if start and end:
        return duration((end - start).total_seconds())
    if start:
        return duration((datetime.now(UTC) - start).total_seconds())
    return "-"


def builds_table(items: list[dict[str, Any]]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("TASK ID", "PROJECT", "STATUS", "AGENT", "CREATED", "DURATION", "PROMPT"):
        t.add_column(
            col, overflow="fold" if col == "TASK ID" else "ellipsis", no_wrap=col != "TASK ID"
        )
    for b in items:
        prompt = safe((b.get("spec") or {}).get("prompt", "")).replace("\n", " ")
        t.add_row(
            b["task_id"],
            safe(b.get("project")),
            status_text(b["status"]),
            safe((b.get("spec") or {}).get("agent") or "-"),
            ago(b.get("created_at")),
            build_duration(b),
            Text(prompt[:60]),
        )
    return t


def projects_table(items: list[dict[str, Any]]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAME", "ID", "REPOSITORY", "BRANCH", "AGENT", "CREDENTIAL"):
        t.add_column(col)
    for p in items:
        t.add_row(
            safe(p["name"]),
            p["id"],
            safe(p["repo_url"]),
            safe(p["default_branch"]),
            safe(p.get("default_agent") or "-"),
            "yes" if p.get("has_git_credential") else "no",
        )
    return t


def workers_table(items: list[dict[str, Any]]) -> Table:
    t = Table(box=None, pad_edge=False, header_style="bold")
    for col in ("NAME", "STATE", "AGENTS", "LABELS", "SLOTS", "CURRENT BUILDS", "LAST SEEN"):
        t.add_column(col)
    for w in items:
        state = Text("online", style="green") if w.get("online") else Text("offline", style="dim")
        t.add_row(
            safe(w["name"]),
            state,
            safe(",".join(w.get("agents") or [])) or "-",
            safe(",".join(w.get("labels") or [])) or "-",
            str(w.get("slots", "")),
            safe(" ".join(w.get("current_tasks") or [])) or "-",
            ago(w.get("last_heartbeat_at")),
        )
    return t


def build_details(b: dict[str, Any]) -> Table:
    spec = b.get("spec") or {}
    result = b.get("result") or {}
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    rows: list[tuple[str, Any]] = [
        ("Task", b["task_id"]),
        ("Project", safe(b.get("project"))),
        ("Status", status_text(b["status"])),
        ("Agent", safe(spec.get("agent") or "-")),
        ("Branch", safe(spec.get("branch") or "-")),
        ("Attempts", f"{b.get('attempts', 0)}/{b.get('max_attempts', '?')}"),
        ("Worker", safe(b.get("worker_id") or "-")),
        ("Created", safe(b.get("created_at"))),
        ("Duration", build_duration(b)),
    ]
    if b.get("pending_reason"):
        rows.append(("Waiting", safe(b["pending_reason"])))
    if b.get("cancel_requested") and b["status"] == "running":
        rows.append(("Cancel", "requested"))
    if result:
        rows.append(("Success", "yes" if result.get("success") else "no"))
        if result.get("error"):
            rows.append(("Error", Text(safe(result["error"]), style="red")))
        if result.get("commit_sha"):
            rows.append(("Commit", safe(result["commit_sha"])))
        files = result.get("files_changed") or []
        if files:
            rows.append(
                (
                    "Files",
                    Text(
                        "\n".join(
                            f"{safe(f.get('change', '?'))[:1].upper()} {safe(f.get('path'))}"
                            for f in files
                        )
                    ),
                )
            )
    rows.append(("Prompt", Text(safe(b.get("rendered_prompt") or spec.get("prompt", "")))))
    for k, v in rows:
        t.add_row(k, v if isinstance(v, Text) else Text(str(v)))
    return t


def final_line(b: dict[str, Any]) -> Text:
    result = b.get("result") or {}
    status = b["status"]
    mark = "✔" if status == "completed" and result.get("success") else "✘"
    line = Text(f"{mark} build {b['task_id']} ", style="bold")
    line.append_text(status_text(status))
    line.append(f" after {build_duration(b)}")
    if result.get("commit_sha"):
        line.append(f" · commit {safe(result['commit_sha'])[:12]}")
    if result.get("files_changed"):
        line.append(f" · {len(result['files_changed'])} file(s) changed")
    if result.get("error") and status != "completed":
        line.append(f" · {safe(result['error'])}", style="red")
    return line


class StatusLine:
    """The live line under the log while waiting: status and elapsed time."""

    def __init__(self, task_id: str, created_at: str | None) -> None:
        self.task_id = task_id
        self.status = "pending"
        self.note = ""
        created = parse_time(created_at)
        self._t0 = time.monotonic() - (
            max(0.0, (datetime.now(UTC) - created).total_seconds()) if created else 0.0
        )

    def update(self, data: dict[str, Any]) -> None:
        self.status = data.get("status", self.status)
        self.note = "cancel requested" if data.get("cancel_requested") else ""

    def __rich__(self) -> Text:
        t = Text("⏳ ")
        t.append_text(status_text(self.status))
        t.append(f" · {duration(time.monotonic() - self._t0)} · {self.task_id}", style="dim")
        if self.note:
            t.append(f" · {self.note}", style="magenta")
        return t


def print_log(console: Console, chunk: dict[str, Any]) -> None:
    text = safe(chunk.get("text", ""))
    style = "red" if chunk.get("stream") == "err" else None
    console.print(
        Text(text.removesuffix("\n"), style=style or ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
