"""Domain events: facts a service announces after it has stored them.

A service publishes one of these on the :class:`~rdev.services.events.EventBus` it was built
with; features that care (callbacks, CI linking, metrics, DNS aliases, local repositories)
subscribe in ``bootstrap.py``. Reading the subscriptions there tells what happens when a
build finishes or a project is deleted; the publishing service knows none of them.

Events are immutable and carry what a subscriber needs, so no subscriber has to read the
database again to learn what just happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdev.domain.hostnames import AliasRecord
from rdev.domain.models import BuildResult, BuildStatus, ClaimedTask, Project


@dataclass(frozen=True)
class BuildsClaimed:
    """Workers claimed these tasks (their builds are now ``running``)."""

    tasks: tuple[ClaimedTask, ...]


@dataclass(frozen=True)
class BuildFinished:
    """A worker's result was stored: the build is final, or ``pending`` again for a retry."""

    task_id: str
    status: BuildStatus
    result: BuildResult


@dataclass(frozen=True)
class ProjectDeleted:
    """A project's row is gone; ``delete_repository`` is what the caller asked for.

    ``aliases`` are the project's DNS aliases as they were just before: their rows went with
    the project's, and their CNAMEs are still to be removed.
    """

    project: Project
    delete_repository: bool = False
    aliases: tuple[AliasRecord, ...] = ()


Event = BuildsClaimed | BuildFinished | ProjectDeleted
