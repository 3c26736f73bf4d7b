"""The build state machine: the one place that decides which status changes are legal."""

from __future__ import annotations

from .errors import IllegalTransition
from .models import BuildStatus

S = BuildStatus

#: FROM -> allowed TO states. running -> pending is a lease expiry or a retryable failure.
TRANSITIONS: dict[BuildStatus, frozenset[BuildStatus]] = {
    S.PENDING: frozenset({S.RUNNING, S.CANCELLED, S.FAILED}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.PENDING}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


def can_transition(src: BuildStatus, dst: BuildStatus) -> bool:
    return dst in TRANSITIONS[src]


def check_transition(src: BuildStatus, dst: BuildStatus) -> None:
    """Raise IllegalTransition unless ``src -> dst`` is allowed."""
    if not can_transition(src, dst):
        raise IllegalTransition(f"a {src.value} build cannot become {dst.value}")
