"""Domain errors: the one error family services raise; the API maps each to problem+json."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error a service raises on purpose.

    ``code`` is the stable, machine-readable suffix of the problem ``type`` URI; ``status``
    the HTTP status the API answers with; ``field`` names the offending input, if any.
    """

    code = "error"
    status = 400

    def __init__(
        self, detail: str, *, field: str | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra or {}


class ValidationFailed(DomainError):
    code = "validation-error"
    status = 422


class NotFound(DomainError):
    code = "not-found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class IllegalTransition(Conflict):
    code = "illegal-transition"


class StaleLease(Conflict):
    code = "stale-lease"


class AliasTaken(Conflict):
    """Another project holds this alias."""

    code = "alias-taken"


class AliasLimitReached(Conflict):
    """The project has as many aliases as ``RDEV_DNS_MAX_ALIASES_PER_PROJECT`` allows."""

    code = "alias-limit"


class AliasBusy(Conflict):
    """Another request is adding or removing this alias right now; a retry will do."""

    code = "alias-busy"


class AliasDNSConflict(Conflict):
    """Other records hold the name in DNS, so no CNAME can be placed there."""

    code = "dns-conflict"


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401


class Forbidden(DomainError):
    code = "forbidden"
    status = 403


class UpstreamFailed(DomainError):
    """An outside system (DNS, CI, git host) failed or refused; not the caller's fault."""

    code = "upstream-failed"
    status = 502


class UpstreamTimeout(UpstreamFailed):
    code = "upstream-timeout"
    status = 504


class ShuttingDown(DomainError):
    """The server is stopping; try again (another replica, or this one after restart)."""

    code = "shutting-down"
    status = 503


class DatabaseUnavailable(DomainError):
    """The database cannot be reached (down, restarting, out of connections, locked past
    its timeout). Nothing was changed; the same request can be sent again shortly."""

    code = "database-unavailable"
    status = 503


class NotReady(DomainError):
    """The server runs but cannot serve yet (e.g. its database schema is not this code's)."""

    code = "not-ready"
    status = 503


class StorageInconsistent(DomainError):
    """Stored rows break an invariant the stores keep (e.g. a queued work task whose build
    is not pending): a bug or a manual edit, never the caller's fault. Nothing is written."""

    code = "storage-inconsistent"
    status = 500


class StorageContention(DomainError):
    """A write lost the same race several times in a row (rows changing hands under it);
    retrying later is safe."""

    code = "storage-contention"
    status = 503
