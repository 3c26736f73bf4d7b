"""The read-only lease look-up behind per-task git credentials (services/repos.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class LiveLease:
    """A leased task's current lease token and the name of its build's project."""

    lease_token: str
    project_name: str


class LeaseReader(Protocol):
    async def live_lease(self, task_id: str) -> LiveLease | None:
        """The task's lease while it is leased (until the reaper takes it back), else None."""
        ...
