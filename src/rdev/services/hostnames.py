"""Project hostnames: the canonical ``{project}.{apps_domain}`` plus CNAME aliases in DNS.

Consistency between the database and DNS (issue 8):

* **Add** = reserve, place, confirm. The alias is reserved in state ``pending`` under the
  store's uniqueness of the name (so of two projects racing for a name exactly one gets it,
  the other a 409, before any DNS traffic); then the CNAME is placed with the "name not in
  use" prerequisite; then the alias becomes ``active``. When DNS fails the reservation is
  deleted again (502, no alias); when it cannot be confirmed after DNS changed (the project
  was deleted meanwhile, the database failed) the CNAME is removed. A ``pending`` alias is
  visible in listings while its request runs; one older than ``pending_stale_after`` (a
  crashed request) may be taken over by a retry of the same project, removed with DELETE, or
  settled by ``reconcile``.
* **Remove** = mark ``deleting``, remove the CNAME (only while it points at the project),
  delete the alias. When DNS fails the alias goes back to its state (502).
* **Project deleted**: the project's aliases go with its row; ``ProjectDeleted`` carries
  them (read by :meth:`HostnameService.aliases_of` before the delete) and
  :meth:`HostnameService.on_project_deleted` removes their CNAMEs.

The feature is "domains" in the public API (``/projects/{id}/domains``, ``rdev domains``,
the ``domains`` table); in code it is "hostnames", apart from the pure domain layer.

Error codes (problem ``type`` suffixes): ``validation-error`` 422 (field ``domain``, the
detail names the rule), ``alias-taken`` 409, ``alias-limit`` 409, ``alias-busy`` 409,
``dns-conflict`` 409, ``upstream-failed`` 502.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import structlog

from rdev.domain.auth import Principal
from rdev.domain.errors import (
    AliasBusy,
    AliasDNSConflict,
    AliasLimitReached,
    AliasTaken,
    Conflict,
    NotFound,
    UpstreamFailed,
    ValidationFailed,
)
from rdev.domain.events import ProjectDeleted
from rdev.domain.hostnames import (
    Alias,
    AliasRecord,
    AliasState,
    canonical_hostname,
    normalize_alias,
    normalize_zone,
)
from rdev.ports.dns import DNSConflict, DNSError, DNSProvider, Drift
from rdev.ports.hostnames import (
    AlreadyThere,
    HostnameStore,
    LimitReached,
    NamedProject,
    ProjectLookup,
)

try:
    import idna as _idna
except ImportError:  # pragma: no cover
    _idna = None  # type: ignore[assignment]

log = structlog.get_logger(__name__)

WRITE_SCOPES = ("projects:write", "domains:write")
READ_SCOPE = "projects:read"

#: ``rdev.adapters.dns.reconcile.reconcile``: (alias → target, provider, fix) → drifts.
Compare = Callable[[dict[str, str], DNSProvider, bool], Awaitable[list[Drift]]]


def _now() -> datetime:
    return datetime.now(UTC)


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
    drifts: list[Drift] = field(default_factory=list)
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


def _alias_view(alias: AliasRecord, state: AliasState | None = None) -> Hostname:
    return Hostname(
        domain=alias.domain,
        unicode=alias.unicode,
        kind="alias",
        state=str(state or alias.state),
        target=alias.target,
        created_at=alias.created_at,
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class HostnameService:
    """Use cases of ``/projects/{id}/domains``, ``/domains`` and ``rdev domains reconcile``.

    ``store``: the aliases; ``projects``: project lookup; ``dns``: the DNSProvider;
    ``zones``: allowed alias zones (see ``effective_zones``); ``compare``: the drift check
    used by :meth:`reconcile`; ``clock``: now (an aware datetime), which decides when a
    ``pending`` alias is stale.
    """

    def __init__(
        self,
        store: HostnameStore,
        projects: ProjectLookup,
        dns: DNSProvider,
        *,
        compare: Compare,
        apps_domain: str,
        zones: list[str],
        max_aliases_per_project: int = 20,
        pending_stale_after: timedelta = timedelta(minutes=2),
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.store = store
        self.projects = projects
        self.dns = dns
        self.compare = compare
        self.apps_domain = normalize_zone(apps_domain)
        self.zones = list(zones)
        self.max_aliases = max_aliases_per_project
        self.pending_stale_after = pending_stale_after
        self.clock = clock

    # -- the project's life (ProjectService's collaborator, ProjectDeleted's subscriber) --

    async def refuse_taken_hostname(self, project_name: str) -> None:
        """A new project's canonical hostname must not already be another project's alias."""
        hostname = canonical_hostname(project_name, self.apps_domain)
        if await self.store.get(hostname) is not None:
            raise Conflict(
                f"{hostname} is already an alias of another project; choose another name",
                field="name",
            )

    async def aliases_of(self, project_id: str) -> tuple[AliasRecord, ...]:
        """The project's aliases in any state: read before its row (and theirs) is deleted."""
        return tuple(await self.store.list(project_ids=[project_id]))

    async def on_project_deleted(self, event: ProjectDeleted) -> None:
        """The project is gone, and its alias rows with it: remove their CNAMEs."""
        await self.release_dns(event.aliases)

    async def release_dns(self, aliases: Sequence[AliasRecord]) -> None:
        """Remove these aliases' CNAMEs (their rows are gone with their project).

        Failures are logged, not raised: the project is already deleted.
        """
        for alias in aliases:
            try:
                await self.dns.remove_cname(alias.domain, alias.target)
            except DNSError as exc:
                log.error(
                    "alias of a deleted project left in DNS; remove it by hand",
                    domain=alias.domain,
                    error=str(exc),
                )

    # -- reading ------------------------------------------------------------------------

    async def list_for_project(self, principal: Principal, ref: str) -> ProjectHostnames:
        principal.require(READ_SCOPE)
        project = await self._project(principal, ref)
        aliases = await self.store.list(project_ids=[project.id])
        return self._hostnames(project, aliases)

    async def export(self, principal: Principal) -> list[ProjectHostnames]:
        """Every visible project's canonical hostname and active aliases (for a proxy)."""
        principal.require(READ_SCOPE)
        only = list(principal.projects) if principal.projects is not None else None
        projects = await self.projects.list(only)
        aliases = await self.store.list(
            project_ids=[p.id for p in projects] if only is not None else None,
            states=[AliasState.ACTIVE],
        )
        by_project: dict[str, list[AliasRecord]] = {}
        for alias in aliases:
            by_project.setdefault(alias.project_id, []).append(alias)
        return [self._hostnames(p, by_project.get(p.id, [])) for p in projects]

    # -- adding -------------------------------------------------------------------------

    async def add(self, principal: Principal, ref: str, name: str) -> tuple[Hostname, bool]:
        """Add an alias; returns it and whether it was created (False: it already was)."""
        principal.require(*WRITE_SCOPES)
        project = await self._project(principal, ref)
        canonical = self._canonical(project)
        alias = normalize_alias(name, self.zones, {canonical})
        await self._refuse_other_canonical(alias)
        reservation = await self.store.reserve(
            project_id=project.id,
            domain=alias.ascii,
            unicode=alias.unicode,
            target=canonical,
            limit=self.max_aliases,
            stale_before=self._stale_before(),
        )
        if isinstance(reservation, LimitReached):
            raise AliasLimitReached(
                f"project {project.name!r} already has {reservation.count} aliases, the limit "
                f"(RDEV_DNS_MAX_ALIASES_PER_PROJECT={self.max_aliases})",
                field="domain",
            )
        if isinstance(reservation, AlreadyThere):
            existing = reservation.alias
            if existing.project_id != project.id:
                raise self._taken(principal, alias, existing)
            if existing.state is AliasState.ACTIVE:
                return _alias_view(existing), False
            doing = "added" if existing.state is AliasState.PENDING else "removed"
            raise AliasBusy(
                f"{alias.ascii} is being {doing} by another request; retry shortly",
                field="domain",
            )
        return await self._place(project, alias, canonical, reservation.alias), True

    async def _place(
        self, project: NamedProject, alias: Alias, canonical: str, reserved: AliasRecord
    ) -> Hostname:
        try:
            await self.dns.add_cname(alias.ascii, canonical)
        except DNSConflict as exc:
            await self._release(reserved)
            raise AliasDNSConflict(str(exc), field="domain") from None
        except DNSError as exc:
            await self._release(reserved)
            raise UpstreamFailed(f"the DNS update failed, no alias was added: {exc}") from None
        except BaseException:  # cancelled, or a bug: never leave the reservation behind
            await asyncio.shield(self._release(reserved))
            raise
        try:
            confirmed = await self.store.set_state(
                reserved.id, AliasState.ACTIVE, expect=AliasState.PENDING
            )
        except BaseException:
            await asyncio.shield(self._undo_add(alias.ascii, canonical, reserved))
            raise
        if not confirmed:
            await self._undo_add(alias.ascii, canonical, reserved)
            raise NotFound(
                f"project {project.name!r} or its alias {alias.ascii} was removed while the "
                "alias was being added; the DNS change was undone"
            )
        return _alias_view(reserved, AliasState.ACTIVE)

    async def _release(self, reserved: AliasRecord) -> None:
        try:
            await self.store.delete(reserved.id, expect=AliasState.PENDING)
        except Exception as exc:  # noqa: BLE001 - the row stays pending; a retry takes it over
            log.error("alias reservation not released", domain=reserved.domain, error=str(exc))

    async def _undo_add(self, alias: str, canonical: str, reserved: AliasRecord) -> None:
        """The alias could not be confirmed after DNS changed: take the CNAME back."""
        try:
            await self.dns.remove_cname(alias, canonical)
        except DNSError as exc:
            log.error(
                "alias left in DNS without a row; run 'rdev domains reconcile'",
                domain=alias,
                error=str(exc),
            )
        await self._release(reserved)

    # -- removing -----------------------------------------------------------------------

    async def remove(self, principal: Principal, ref: str, name: str) -> None:
        principal.require(*WRITE_SCOPES)
        project = await self._project(principal, ref)
        key = self._lookup_key(name)
        alias = await self.store.get(key) if key else None
        if alias is None or alias.project_id != project.id:
            raise NotFound(f"project {project.name!r} has no alias {name!r}")
        previous = alias.state
        if previous is AliasState.PENDING and not self._is_stale(alias):
            raise AliasBusy(f"{key} is being added right now; retry shortly", field="domain")
        if previous is not AliasState.DELETING and not await self.store.set_state(
            alias.id, AliasState.DELETING, expect=previous
        ):
            raise AliasBusy(f"{key} is changing right now; retry shortly", field="domain")
        try:
            await self.dns.remove_cname(alias.domain, alias.target)
        except DNSError as exc:
            await self.store.set_state(alias.id, previous, expect=AliasState.DELETING)
            raise UpstreamFailed(f"the DNS update failed, the alias was kept: {exc}") from None
        await self.store.delete(alias.id)

    # -- reconcile ----------------------------------------------------------------------

    async def reconcile(self, fix: bool) -> DriftReport:
        """Compare every alias with DNS; with ``fix``, put missing/wrong CNAMEs back.

        Stale ``pending`` aliases (a request that died mid-way) are checked too; once their
        CNAME is served they become ``active``. Fresh ``pending`` and ``deleting`` aliases
        belong to running requests and are left alone.
        """
        if self.dns.name == "none":
            return DriftReport(provider="none", checked=0)
        aliases = [
            a
            for a in await self.store.list(states=[AliasState.ACTIVE, AliasState.PENDING])
            if a.state is AliasState.ACTIVE or self._is_stale(a)
        ]
        expected = {a.domain: a.target for a in aliases}
        drifts = await self.compare(expected, self.dns, fix)
        unsettled = {d.alias for d in drifts if not d.fixed}
        activated = []
        for a in aliases:
            if (
                a.state is AliasState.PENDING
                and a.domain not in unsettled
                and (await self.store.set_state(a.id, AliasState.ACTIVE, expect=AliasState.PENDING))
            ):
                activated.append(a.domain)
        return DriftReport(
            provider=self.dns.name, checked=len(aliases), drifts=drifts, activated=activated
        )

    # -- internals ----------------------------------------------------------------------

    async def _project(self, principal: Principal, ref: str) -> NamedProject:
        project = await self.projects.get(ref)
        principal.require_project(project.id, project.name)
        return project

    def _canonical(self, project: NamedProject) -> str:
        return canonical_hostname(project.name, self.apps_domain)

    def _hostnames(self, project: NamedProject, aliases: Sequence[AliasRecord]) -> ProjectHostnames:
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
            aliases=[_alias_view(a) for a in sorted(aliases, key=lambda a: a.domain)],
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

    def _taken(self, principal: Principal, alias: Alias, holder: AliasRecord) -> AliasTaken:
        if principal.may_see_project(holder.project_id, holder.project_name):
            return AliasTaken(
                f"{alias.ascii} is already an alias of project {holder.project_name!r}",
                field="domain",
                extra={"project": holder.project_name},
            )
        return AliasTaken(f"{alias.ascii} is already taken by another project", field="domain")

    def _lookup_key(self, name: str) -> str | None:
        try:
            return normalize_zone(name)
        except ValidationFailed:
            return None

    def _stale_before(self) -> datetime:
        return self.clock() - self.pending_stale_after

    def _is_stale(self, alias: AliasRecord) -> bool:
        return _aware(alias.created_at) < self._stale_before()
