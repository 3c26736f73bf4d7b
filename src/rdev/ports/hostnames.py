"""The hostname store port: project aliases as the HostnameService sees them.

An alias is first *reserved* (state ``pending``) under the store's uniqueness of the name, so
of two projects racing for one name the store decides, before any DNS traffic; the service
then places the CNAME and moves the alias on. Every state change names the state it expects
(``expect``), so two requests working on one alias cannot both win: the loser sees ``False``.

The aliases of a project go with the project (the SQL stores by ``ON DELETE CASCADE``).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from rdev.domain.hostnames import AliasRecord, AliasState


@dataclass(frozen=True)
class Reserved:
    """This call now holds the alias in state ``pending``: a new row, or a stale ``pending``
    row of the same project taken over (its ``created_at`` restarted)."""

    alias: AliasRecord


@dataclass(frozen=True)
class AlreadyThere:
    """An alias of that name exists already (any project, any state); nothing changed."""

    alias: AliasRecord


@dataclass(frozen=True)
class LimitReached:
    """The project already has ``count`` aliases, at least the limit; nothing changed."""

    count: int


Reservation = Reserved | AlreadyThere | LimitReached


class HostnameStore(Protocol):
    """The stored aliases of all projects."""

    async def get(self, domain: str) -> AliasRecord | None:
        """The alias with this A-label name, of whichever project, or None."""
        ...

    async def list(
        self,
        project_ids: Sequence[str] | None = None,
        states: Sequence[AliasState] | None = None,
    ) -> builtins.list[AliasRecord]:
        """Aliases ordered by project name, then name; a ``None`` filter means all."""
        ...

    async def reserve(
        self,
        *,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> Reservation:
        """Claim ``domain`` for the project in state ``pending``.

        A ``pending`` row of the same project created before ``stale_before`` (its request
        died) is taken over. The per-project ``limit`` holds under concurrency. Raises
        NotFound when the project does not exist.
        """
        ...

    async def set_state(self, alias_id: int, state: AliasState, *, expect: AliasState) -> bool:
        """Move the alias from ``expect`` to ``state``; False when it is gone or moved on."""
        ...

    async def delete(self, alias_id: int, *, expect: AliasState | None = None) -> bool:
        """Delete the alias (only while in state ``expect``, if given); False when not there."""
        ...


class NamedProject(Protocol):
    """What the hostname rules need of a project: its id and its name (the label of its
    canonical hostname)."""

    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class ProjectLookup(Protocol):
    """The project reads the HostnameService needs (a subset of the project store)."""

    async def get(self, ref: str) -> NamedProject:
        """The project by id or name; NotFound when there is none."""
        ...

    async def list(self, only: builtins.list[str] | None = None) -> Sequence[NamedProject]:
        """All projects by name, or those whose id or name is in ``only``."""
        ...
