"""In-memory fakes for the hostname feature: the HostnameStore, a DNS server, a project list.

:class:`FakeHostnameStore` keeps the contract of ``adapters/db/hostnames.py`` without SQL:
the projects it knows are seeded with :meth:`~FakeHostnameStore.add_project` (the SQL side's
``projects`` rows), and :meth:`~FakeHostnameStore.remove_project` drops a project's aliases
with it, as ``ON DELETE CASCADE`` does. Creation times come from the injected clock.

:class:`FakeDNS` is a DNSProvider holding CNAMEs in a dict, with switches to fail the next
calls; :class:`FakeProjects` answers the HostnameService's project lookups from the same
store's projects.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from rdev.domain.errors import NotFound
from rdev.domain.hostnames import AliasRecord, AliasState
from rdev.ports.dns import DNSConflict, DNSError
from rdev.ports.hostnames import AlreadyThere, LimitReached, Reservation, Reserved


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class FakeHostnameStore:
    clock: Callable[[], datetime] = _utc_now
    #: project id -> project name
    projects: dict[str, str] = field(default_factory=dict)
    #: alias id -> alias (its ``project_name`` is filled in when read)
    aliases: dict[int, AliasRecord] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- seeding (not on the port) ---------------------------------------------------------

    def add_project(self, project_id: str, name: str) -> None:
        self.projects[project_id] = name

    def remove_project(self, project_id: str) -> None:
        """The project's row is deleted: its aliases go with it."""
        self.projects.pop(project_id, None)
        for alias_id in [i for i, a in self.aliases.items() if a.project_id == project_id]:
            del self.aliases[alias_id]

    # -- the port ----------------------------------------------------------------------------

    def _read(self, alias: AliasRecord) -> AliasRecord:
        return replace(alias, project_name=self.projects[alias.project_id])

    def _by_domain(self, domain: str) -> AliasRecord | None:
        return next((a for a in self.aliases.values() if a.domain == domain), None)

    async def get(self, domain: str) -> AliasRecord | None:
        found = self._by_domain(domain)
        return self._read(found) if found else None

    async def list(
        self,
        project_ids: Sequence[str] | None = None,
        states: Sequence[AliasState] | None = None,
    ) -> builtins.list[AliasRecord]:
        chosen = [
            self._read(a)
            for a in self.aliases.values()
            if (project_ids is None or a.project_id in project_ids)
            and (states is None or a.state in states)
        ]
        return sorted(chosen, key=lambda a: (a.project_name, a.domain))

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
        if project_id not in self.projects:
            raise NotFound(f"no project {project_id!r}")
        found = self._by_domain(domain)
        if found is not None:
            takeover = (
                found.project_id == project_id
                and found.state is AliasState.PENDING
                and found.created_at < stale_before
            )
            if not takeover:
                return AlreadyThere(self._read(found))
            renewed = replace(found, created_at=self.clock())
            self.aliases[found.id] = renewed
            return Reserved(self._read(renewed))
        count = sum(1 for a in self.aliases.values() if a.project_id == project_id)
        if count >= limit:
            return LimitReached(count)
        alias = AliasRecord(
            id=next(self._ids),
            project_id=project_id,
            project_name=self.projects[project_id],
            domain=domain,
            unicode=unicode,
            target=target,
            state=AliasState.PENDING,
            created_at=self.clock(),
        )
        self.aliases[alias.id] = alias
        return Reserved(alias)

    async def set_state(self, alias_id: int, state: AliasState, *, expect: AliasState) -> bool:
        alias = self.aliases.get(alias_id)
        if alias is None or alias.state is not expect:
            return False
        self.aliases[alias_id] = replace(alias, state=state)
        return True

    async def delete(self, alias_id: int, *, expect: AliasState | None = None) -> bool:
        alias = self.aliases.get(alias_id)
        if alias is None or (expect is not None and alias.state is not expect):
            return False
        del self.aliases[alias_id]
        return True


@dataclass(frozen=True)
class FakeProject:
    id: str
    name: str


@dataclass
class FakeProjects:
    """The HostnameService's project lookup, over the projects a FakeHostnameStore knows."""

    store: FakeHostnameStore

    async def get(self, ref: str) -> FakeProject:
        for project_id, name in self.store.projects.items():
            if ref in (project_id, name):
                return FakeProject(project_id, name)
        raise NotFound(f"no project {ref!r}")

    async def list(self, only: builtins.list[str] | None = None) -> builtins.list[FakeProject]:
        projects = [FakeProject(i, n) for i, n in self.store.projects.items()]
        if only is not None:
            projects = [p for p in projects if p.id in only or p.name in only]
        return sorted(projects, key=lambda p: p.name)


@dataclass
class FakeDNS:
    """CNAMEs in a dict (alias -> target, without the trailing dot).

    ``occupied``: names holding other records (adding a CNAME there is a DNSConflict);
    ``failing``: while True every call raises DNSError, as an unreachable server would;
    ``on_add``: called after a CNAME is placed (to make something happen meanwhile).
    """

    name: str = "fake"
    cnames: dict[str, str] = field(default_factory=dict)
    occupied: set[str] = field(default_factory=set)
    failing: bool = False
    on_add: Callable[[str], None] | None = None

    def _check(self) -> None:
        if self.failing:
            raise DNSError("the DNS server did not answer")

    async def add_cname(self, alias: str, target: str) -> None:
        self._check()
        if alias in self.occupied or alias in self.cnames:
            raise DNSConflict(f"{alias} holds other records")
        self.cnames[alias] = target
        if self.on_add is not None:
            self.on_add(alias)

    async def remove_cname(self, alias: str, target: str | None = None) -> None:
        self._check()
        if target is None or self.cnames.get(alias) == target:
            self.cnames.pop(alias, None)

    async def lookup_cname(self, alias: str) -> str | None:
        self._check()
        target = self.cnames.get(alias)
        return target + "." if target else None
