"""The body of ``rdev domains reconcile [--fix]``: compare alias rows with DNS, report drift.

The CLI (``rdev.cli``) attaches :func:`reconcile_command`; it prints one line per drifted
alias and returns the process exit code: 0 in sync (or everything fixed), 1 when drift is
left, 2 when the DNS settings are unusable.
"""

from __future__ import annotations

from collections.abc import Callable

from rdev.bootstrap import build_container
from rdev.config import Settings
from rdev.services.hostnames import DriftReport


def format_report(report: DriftReport, fix: bool) -> list[str]:
    """Human lines for a report (stable order, no secrets: DNS errors are scrubbed)."""
    if report.provider == "none":
        return ["DNS provider is 'none': aliases are only recorded, nothing to compare."]
    lines = []
    for d in report.drifts:
        served = d.actual or "nothing"
        line = f"{d.kind:<11} {d.alias}  expected CNAME {d.expected}., served {served}"
        if d.fixed:
            line += "  -> fixed"
        elif d.error:
            line += f"  -> {'not fixed: ' if fix else ''}{d.error}"
        lines.append(line)
    lines.extend(
        f"settled     {name}  (a stale pending alias is served: now active)"
        for name in report.activated
    )
    left = sum(1 for d in report.drifts if not d.fixed)
    fixed = len(report.drifts) - left
    summary = f"{report.checked} aliases checked, {len(report.drifts)} drifted"
    if fix:
        summary += f", {fixed} fixed"
    if left and not fix:
        summary += " (run with --fix to repair)"
    lines.append(summary)
    return lines


async def reconcile_command(
    settings: Settings, fix: bool, echo: Callable[[str], object] = print
) -> int:
    """Run the comparison against the configured database and DNS server."""
    try:
        container = build_container(settings)
    except ValueError as exc:  # a bad DNS setting; the message names it, never the secret
        echo(f"rdev: {exc}")
        return 2
    try:
        report = await container.hostnames.reconcile(fix)
    finally:
        await container.db.dispose()
    for line in format_report(report, fix):
        echo(line)
    return 0 if report.clean else 1
