"""Project hostnames: the canonical ``{project}.{apps_domain}`` plus CNAME aliases in DNS.

Consistency between the database and DNS (issue 8):

* **Add** = reserve, place, confirm. The alias row is inserted in state ``pending`` under
  the unique constraint on ``domain`` (so of two projects racing for a name exactly one
  gets the row, the other a 409, before any DNS traffic); then the CNAME is placed with
  the "name not in use" prerequisite; then the row becomes ``active``. When DNS fails
  the row is deleted again (502, no row); when the row cannot be confirmed after DNS
  changed (the project was deleted meanwhile, the database failed) the CNAME is removed.
  A ``pending`` row is visible in listings while its request runs; one older than
  ``pending_stale_after`` (a crashed request) may be taken over by a retry of the same
  project, removed with DELETE, or settled by ``reconcile``.
* **Remove** = mark ``deleting``, remove the CNAME (only while it points at the project),
  delete the row. When DNS fails the row goes back to its state (502).
* **Project deleted**: :class:`AliasReleasingProjectStore` removes the project's CNAMEs.

Error codes (problem ``type`` suffixes): ``validation-error`` 422 (field ``domain``, the
detail names the rule), ``alias-taken`` 409, ``alias-limit`` 409, ``alias-busy`` 409,
``dns-conflict`` 409, ``upstream-failed`` 502.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import Conflict, NotFound, UpstreamFailed, ValidationFailed
from rdev.domain.hostnames import (
    Alias,
    canonical_hostname,
    normalize_alias,
    normalize_zone,
)
from rdev.domain.models import Project
from rdev.ports.dns import DNSConflict, DNSError, DNSProvider

try:
    import idna as _idna
except ImportError:  # pragma: no cover
    _idna = None  # type: ignore[assignment]

log = structlog.get_logger(__name__)

WRITE_SCOPES = ("projects:write", "domains:write")
READ_SCOPE = "projects:read"


class AliasTaken(Conflict):
    code = "alias-taken"


class AliasLimitReached(Conflict):
    code = "alias-limit"


class AliasBusy(Conflict):
    code = "alias-busy"


class AliasDNSConflict(Conflict):
    code = "dns-conflict"


# -- the stores this service needs (structural: SqlDomainStore, SqlProjectStore) --------


class DomainStore(Protocol):
    async def get(self, domain: str) -> dict[str, Any] | None: ...

    async def list(
        self, project_ids: list[str] | None = None, states: list[str] | None = None
    ) -> list[dict[str, Any]]: ...

    async def reserve(
        self,
        *,
        project_id: str,
        domain: str,
        unicode: str,
        target: str,
        limit: int,
        stale_before: datetime,
    ) -> tuple[str, dict[str, Any]]: ...

    async def set_state(self, row_id: int, state: str, *, expect: str) -> bool: ...

    async def delete(self, row_id: int, *, expect: str | None = None) -> bool: ...


#: ``rdev.adapters.dns.reconcile.reconcile``: (alias → target, provider, fix) → drifts.
Compare = Callable[[dict[str, str], DNSProvider, bool], Awaitable[list[Any]]]


class ProjectLookup(Protocol):
    async def get(self, ref: str) -> Project: ...

    async def list(self, only: list[str] | None = None) -> list[Project]: ...


# -- what the service returns -----------------------------------------------------------


@dataclass(frozen=True)
class Hostname:
    """One hostname of a project. ``domain`` is the A-label form (DNS, database);
    ``unicode`` the form for people. ``target`` is the CNAME target of an alias."""

    domain: str
    unicode: str
    kind: Literal["canonical", "alias"]
    state: str
    target: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class ProjectHostnames:
    project_id: str
    project_name: str
    canonical: Hostname
    aliases: list[Hostname]


@dataclass(frozen=True)
class DriftReport:
    """What ``reconcile`` found: ``drifts`` as in :mod:`rdev.adapters.dns.reconcile`."""

    provider: str
    checked: int
    drifts: list[Any] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """True when nothing is left out of sync (every drift was fixed)."""
        return all(d.fixed for d in self.drifts)


def _unicode_of(ascii_name: str) -> str:
    if _idna is None or "xn--" not in ascii_name:
        return ascii_name
    try:
        return str(_idna.decode(ascii_name))
    except (_idna.IDNAError, UnicodeError):
        return ascii_name


def _alias_view(row: dict[str, Any]) -> Hostname:
    return Hostname(
        domain=row["domain"],
        unicode=row["unicode"],
        kind="alias",
        state=row["state"],
        target=row["target"],
        created_at=row["created_at"],
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class DomainService:
    """Use cases of ``/projects/{id}/domains``, ``/domains`` and ``rdev domains reconcile``.

    ``store``: alias rows (SqlDomainStore); ``projects``: project lookup (SqlProjectStore);
    ``dns``: the DNSProvider; ``zones``: allowed alias zones (see ``effective_zones``);
    ``compare``: the drift check used by :meth:`reconcile`.
    """

    def __init__(
        self,
        store: DomainStore,
        projects: ProjectLookup,
        dns: DNSProvider,
        *,
        compare: Compare,
        apps_domain: str,
        zones: list[str],
        max_aliases_per_project: int = 20,
        pending_stale_after: timedelta = timedelta(minutes=2),
    ) -> None:
        self.store = store
        self.projects = projects
        self.dns = dns
        self.compare = compare
        self.apps_domain = normalize_zone(apps_domain)
        self.zones = list(zones)
        self.max_aliases = max_aliases_per_project
        self.pending_stale_after = pending_stale_after

    async def refuse_taken_hostname(self, project_name: str) -> None:
        """A new project's canonical hostname must not already be another project's alias."""
        hostname = canonical_hostname(project_name, self.apps_domain)
        if await self.store.get(hostname) is not None:
            raise Conflict(
                f"{hostname} is already an alias of another project; choose another name",
                field="name",
            )

    # -- reading ------------------------------------------------------------------------

    async def list_for_project(self, principal: Principal, ref: str) -> ProjectHostnames:
        principal.require(READ_SCOPE)
        project = await self._project(principal, ref)
        rows = await self.store.list(project_ids=[project.id])
        return self._hostnames(project, rows)

    async def export(self, principal: Principal) -> list[ProjectHostnames]:
        """Every visible project's canonical hostname and active aliases (for a proxy)."""
        principal.require(READ_SCOPE)
        only = list(principal.projects) if principal.projects is not None else None
        projects = await self.projects.list(only)
        rows = await self.store.list(
            project_ids=[p.id for p in projects] if only is not None else None,
            states=["active"],
        )
        by_project: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_project.setdefault(row["project_id"], []).append(row)
        return [self._hostnames(p, by_project.get(p.id, [])) for p in projects]

    # -- adding -------------------------------------------------------------------------

    async def add(self, principal: Principal, ref: str, name: str) -> tuple[Hostname, bool]:
        """Add an alias; returns it and whether it was created (False: it already was)."""
        principal.require(*WRITE_SCOPES)
        project = await self._project(principal, ref)
        canonical = self._canonical(project)
        alias = normalize_alias(name, self.zones, {canonical})
        await self._refuse_other_canonical(alias)
        outcome, row = await self.store.reserve(
            project_id=project.id,
            domain=alias.ascii,
            unicode=alias.unicode,
            target=canonical,
            limit=self.max_aliases,
            stale_before=self._stale_before(),
        )
        if outcome == "limit":
            raise AliasLimitReached(
                f"project {project.name!r} already has {row['count']} aliases, the limit "
                f"(RDEV_DNS_MAX_ALIASES_PER_PROJECT={self.max_aliases})",
                field="domain",
            )
        if outcome == "exists":
            if row["project_id"] != project.id:
                raise self._taken(principal, alias, row)
            if row["state"] == "active":
                return _alias_view(row), False
            doing = "added" if row["state"] == "pending" else "removed"
            raise AliasBusy(
                f"{alias.ascii} is being {doing} by another request; retry shortly",
                field="domain",
            )
        return await self._place(project, alias, canonical, row), True

    async def _place(
        self, project: Project, alias: Alias, canonical: str, row: dict[str, Any]
    ) -> Hostname:
        try:
            await self.dns.add_cname(alias.ascii, canonical)
        except DNSConflict as exc:
            await self._release(row)
            raise AliasDNSConflict(str(exc), field="domain") from None
        except DNSError as exc:
            await self._release(row)
            raise UpstreamFailed(f"the DNS update failed, no alias was added: {exc}") from None
        except BaseException:  # cancelled, or a bug: never leave the reservation behind
            await asyncio.shield(self._release(row))
            raise
        try:
            confirmed = await self.store.set_state(row["id"], "active", expect="pending")
        except BaseException:
            await asyncio.shield(self._undo_add(alias.ascii, canonical, row))
            raise
        if not confirmed:
            await self._undo_add(alias.ascii, canonical, row)
            raise NotFound(
                f"project {project.name!r} or its alias {alias.ascii} was removed while the "
                "alias was being added; the DNS change was undone"
            )
        return _alias_view({**row, "state": "active"})

    async def _release(self, row: dict[str, Any]) -> None:
        try:
            await self.store.delete(row["id"], expect="pending")
        except Exception as exc:  # noqa: BLE001 - the row stays pending; a retry takes it over
            log.error("alias reservation not released", domain=row["domain"], error=str(exc))

    async def _undo_add(self, alias: str, canonical: str, row: dict[str, Any]) -> None:
        """The row could not be confirmed after DNS changed: take the CNAME back."""
        try:
            await self.dns.remove_cname(alias, canonical)
        except DNSError as exc:
            log.error(
                "alias left in DNS without a row; run 'rdev domains reconcile'",
                domain=alias,
                error=str(exc),
            )
        await self._release(row)

    # -- removing -----------------------------------------------------------------------

    async def remove(self, principal: Principal, ref: str, name: str) -> None:
        principal.require(*WRITE_SCOPES)
        project = await self._project(principal, ref)
        key = self._lookup_key(name)
        row = await self.store.get(key) if key else None
        if row is None or row["project_id"] != project.id:
            raise NotFound(f"project {project.name!r} has no alias {name!r}")
        previous = row["state"]
        if previous == "pending" and not self._is_stale(row):
            raise AliasBusy(f"{key} is being added right now; retry shortly", field="domain")
        if previous != "deleting" and not await self.store.set_state(
            row["id"], "deleting", expect=previous
        ):
            raise AliasBusy(f"{key} is changing right now; retry shortly", field="domain")
        try:
            await self.dns.remove_cname(row["domain"], row["target"])
        except DNSError as exc:
            await self.store.set_state(row["id"], previous, expect="deleting")
            raise UpstreamFailed(f"the DNS update failed, the alias was kept: {exc}") from None
        await self.store.delete(row["id"])

    async def release_dns(self, rows: list[dict[str, Any]]) -> None:
        """Remove these aliases' CNAMEs (their rows are gone with their project).

        Failures are logged, not raised: the project is already deleted.
        """
        for row in rows:
            try:
                await self.dns.remove_cname(row["domain"], row["target"])
            except DNSError as exc:
                log.error(
                    "alias of a deleted project left in DNS; remove it by hand",
                    domain=row["domain"],
                    error=str(exc),
                )

    # -- reconcile ----------------------------------------------------------------------

    async def reconcile(self, fix: bool) -> DriftReport:
        """Compare every alias row with DNS; with ``fix``, put missing/wrong CNAMEs back.

        Stale ``pending`` rows (a request that died mid-way) are checked too; once their
        CNAME is served they become ``active``. Fresh ``pending`` and ``deleting`` rows
        belong to running requests and are left alone.
        """
        if self.dns.name == "none":
            return DriftReport(provider="none", checked=0)
        rows = [
            r
            for r in await self.store.list(states=["active", "pending"])
            if r["state"] == "active" or self._is_stale(r)
        ]
        expected = {r["domain"]: r["target"] for r in rows}
        drifts = await self.compare(expected, self.dns, fix)
        unsettled = {d.alias for d in drifts if not d.fixed}
        activated = []
        for r in rows:
            if (
                r["state"] == "pending"
                and r["domain"] not in unsettled
                and (await self.store.set_state(r["id"], "active", expect="pending"))
            ):
                activated.append(r["domain"])
        return DriftReport(
            provider=self.dns.name, checked=len(rows), drifts=drifts, activated=activated
        )

    # -- internals ----------------------------------------------------------------------

    async def _project(self, principal: Principal, ref: str) -> Project:
        project = await self.projects.get(ref)
        principal.require_project(project.id, project.name)
        return project

    def _canonical(self, project: Project) -> str:
        return canonical_hostname(project.name, self.apps_domain)

    def _hostnames(self, project: Project, rows: list[dict[str, Any]]) -> ProjectHostnames:
        canonical = self._canonical(project)
        return ProjectHostnames(
            project_id=project.id,
            project_name=project.name,
            canonical=Hostname(
                domain=canonical,
                unicode=_unicode_of(canonical),
                kind="canonical",
                state="active",
            ),
            aliases=[_alias_view(r) for r in sorted(rows, key=lambda r: r["domain"])],
        )

    async def _refuse_other_canonical(self, alias: Alias) -> None:
        """No alias may take another project's canonical hostname (project names are
        slugs, so the canonical label is the name itself)."""
        suffix = "." + self.apps_domain
        if not alias.ascii.endswith(suffix):
            return
        label = alias.ascii[: -len(suffix)]
        if "." in label:
            return
        with contextlib.suppress(NotFound):
            await self.projects.get(label)
            raise ValidationFailed(
                f"{alias.ascii!r} is a project's canonical hostname and cannot be an alias",
                field="domain",
            )

    def _taken(self, principal: Principal, alias: Alias, row: dict[str, Any]) -> AliasTaken:
        if principal.may_see_project(row["project_id"], row["project_name"]):
            return AliasTaken(
                f"{alias.ascii} is already an alias of project {row['project_name']!r}",
                field="domain",
                extra={"project": row["project_name"]},
            )
        return AliasTaken(f"{alias.ascii} is already taken by another project", field="domain")

    def _lookup_key(self, name: str) -> str | None:
        try:
            return normalize_zone(name)
        except ValidationFailed:
            return None

    def _stale_before(self) -> datetime:
        return datetime.now(UTC) - self.pending_stale_after

    def _is_stale(self, row: dict[str, Any]) -> bool:
        return _aware(row["created_at"]) < self._stale_before()


class AliasReleasingProjectStore:
    """The project store, plus: deleting a project removes its aliases from DNS.

    The ``domains`` rows go with the project (ON DELETE CASCADE) before any
    ``ProjectService.on_delete`` hook runs, so the aliases are read here, before the
    delete, and their CNAMEs removed after it. Every other call goes to ``inner``.
    """

    def __init__(self, inner: Any, domains: DomainService) -> None:
        self._inner = inner
        self._domains = domains

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def delete(self, project_id: str) -> None:
        rows = await self._domains.store.list(project_ids=[project_id])
        await self._inner.delete(project_id)
        await self._domains.release_dns(rows)
