"""The event bus: services publish domain events, features subscribe to them.

This replaces hook lists appended to services after construction: a service gets the bus in
its constructor and publishes; ``bootstrap.py`` subscribes each feature's handler in one
place. A handler that raises is logged and skipped: the fact it reacts to is already stored
and must not be undone by a follower (a failed callback enqueue must not fail a build).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from rdev.domain.events import Event

log = structlog.get_logger(__name__)

E = TypeVar("E", bound=Event)


class EventBus:
    def __init__(self) -> None:
        self._handlers: defaultdict[type[Any], list[Callable[[Any], Awaitable[None]]]] = (
            defaultdict(list)
        )

    def subscribe(self, event_type: type[E], handler: Callable[[E], Awaitable[None]]) -> None:
        """Call ``handler`` for every published ``event_type``, in subscription order."""
        self._handlers[event_type].append(handler)

    def subscribed(self, event_type: type[Event]) -> bool:
        """Whether anyone listens (lets a publisher skip building an event nobody reads)."""
        return bool(self._handlers.get(event_type))

    async def publish(self, event: Event) -> None:
        for handler in self._handlers.get(type(event), ()):
            try:
                await handler(event)
            except Exception:  # noqa: BLE001 - a follower never undoes the stored fact
                log.exception(
                    "event handler failed",
                    event_type=type(event).__name__,
                    handler=getattr(handler, "__qualname__", repr(handler)),
                )
