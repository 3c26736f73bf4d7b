"""The work queue port's data: what a worker reports for one claimed task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rdev.domain.models import BuildResult


@dataclass
class Completion:
    """One result for :meth:`complete_many`: the task, the lease it ran under, the result."""

    task_id: str
    lease_token: str
    result: BuildResult
    agent_info: dict[str, Any] | None = None
