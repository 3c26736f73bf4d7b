"""CI links: the states a pushed build's CI follow-up goes through, and what it shows.

A link starts ``searching`` (no pipeline for the pushed commit seen yet), becomes
``following`` once a pipeline that is still running was found, and ends ``done`` (the
pipeline reached a terminal state: a ``build.ci_passed`` / ``build.ci_failed`` event is
queued) or ``gave_up`` (the deadline passed, or CI was removed from the project). Like the
build state machine (``state_machine.py``), this table is the one place that says which
changes are legal, so a linker bug cannot resurrect a finished link or skip a state.

:class:`CIProgress` is the build's ``ci`` JSON as the API shows it
(``{provider, commit_sha, pipeline_number, status, raw_status, url, failed_steps}``, plus
``reason`` once given up and ``error`` while the last check failed).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from .errors import IllegalTransition


class CILinkState(StrEnum):
    SEARCHING = "searching"
    FOLLOWING = "following"
    DONE = "done"
    GAVE_UP = "gave_up"

    @property
    def is_open(self) -> bool:
        """Whether the linker still checks a link in this state."""
        return self in OPEN_LINK_STATES


L = CILinkState

#: FROM -> allowed TO states. Staying in an open state is a check that changed nothing final.
LINK_TRANSITIONS: dict[CILinkState, frozenset[CILinkState]] = {
    L.SEARCHING: frozenset({L.SEARCHING, L.FOLLOWING, L.DONE, L.GAVE_UP}),
    L.FOLLOWING: frozenset({L.FOLLOWING, L.DONE, L.GAVE_UP}),
    L.DONE: frozenset(),
    L.GAVE_UP: frozenset(),
}

OPEN_LINK_STATES = frozenset({L.SEARCHING, L.FOLLOWING})


def link_state(value: str) -> CILinkState:
    """Parse a stored state; an unknown one is an IllegalTransition (never guessed at)."""
    try:
        return CILinkState(value)
    except ValueError:
        raise IllegalTransition(f"unknown CI link state {value!r}") from None


def check_link_transition(src: CILinkState | str, dst: CILinkState | str) -> CILinkState:
    """Raise IllegalTransition unless ``src -> dst`` is allowed; returns ``dst`` parsed."""
    frm, to = link_state(src), link_state(dst)
    if to not in LINK_TRANSITIONS[frm]:
        raise IllegalTransition(f"a {frm.value} CI link cannot become {to.value}")
    return to


#: Normalized pipeline states after which nothing changes any more.
TERMINAL_PIPELINE_STATES = frozenset({"success", "failure", "cancelled", "error", "skipped"})
#: Terminal pipeline states that count as passed (``build.ci_passed``).
PASSED_PIPELINE_STATES = frozenset({"success", "skipped"})


@dataclass(frozen=True)
class CIProgress:
    """A build's ``ci`` JSON. ``status`` is ``searching``, a normalized pipeline state,
    ``unknown`` (gave up: no pipeline found) or ``timeout`` (gave up: it did not finish)."""

    provider: str
    commit_sha: str
    status: str = "searching"
    pipeline_number: int | None = None
    raw_status: str | None = None
    url: str | None = None
    failed_steps: tuple[str, ...] = ()
    #: Why the linker gave up (only then).
    reason: str | None = None
    #: The last check's (scrubbed) error, while checks fail.
    error: str | None = None

    @classmethod
    def searching(cls, provider: str, commit_sha: str) -> CIProgress:
        return cls(provider=provider, commit_sha=commit_sha)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None, *, commit_sha: str) -> CIProgress:
        """Read a stored ``ci`` (an empty or missing one starts over as ``searching``)."""
        if not data:
            return cls.searching("", commit_sha)
        number = data.get("pipeline_number")
        return cls(
            provider=str(data.get("provider") or ""),
            commit_sha=str(data.get("commit_sha") or commit_sha),
            status=str(data.get("status") or "searching"),
            pipeline_number=int(number) if number is not None else None,
            raw_status=data.get("raw_status"),
            url=data.get("url"),
            failed_steps=tuple(data.get("failed_steps") or ()),
            reason=data.get("reason"),
            error=data.get("error"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": self.provider,
            "commit_sha": self.commit_sha,
            "pipeline_number": self.pipeline_number,
            "status": self.status,
            "raw_status": self.raw_status,
            "url": self.url,
            "failed_steps": list(self.failed_steps),
        }
        if self.reason is not None:
            out["reason"] = self.reason
        if self.error is not None:
            out["error"] = self.error
        return out

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_PIPELINE_STATES

    @property
    def passed(self) -> bool:
        return self.status in PASSED_PIPELINE_STATES

    def with_error(self, error: str | None) -> CIProgress:
        return replace(self, error=error)

    def given_up(self, status: str, reason: str) -> CIProgress:
        return replace(self, status=status, reason=reason)
