"""Domain events, emitted after a change is committed, and the in-process bus that carries them."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from exobot.core.model import EntryKind

log = logging.getLogger("exobot.events")


@dataclass(frozen=True)
class TicketEvent:
    """Something was recorded in a ticket's history."""

    ticket: int
    kind: EntryKind
    actor: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TicketImported:
    """A ticket was written (`created`) or brought up to date by an import from another
    helpdesk, with `entries` history entries. Nobody acts on it: imported history is past,
    announced nowhere and raising no alert."""

    ticket: int
    created: bool
    entries: int
    source: str


@dataclass(frozen=True)
class OutboxQueued:
    """An outward effect was queued: workers may want to wake up."""

    kind: str


Handler = Callable[[Any], Awaitable[None] | None]


class EventBus:
    """Delivers events to in-process listeners; a failing listener is logged, never fatal."""

    def __init__(self) -> None:
        self._handlers: dict[type, list[Handler]] = defaultdict(list)

    def subscribe(self, event_type: type, handler: Handler) -> Callable[[], None]:
        """Register `handler` for events of `event_type`; returns a function that unsubscribes."""
        self._handlers[event_type].append(handler)
        return lambda: self._handlers[event_type].remove(handler)

    async def emit(self, event: object) -> None:
        """Call every handler of the event's type, in registration order."""
        for handler in list(self._handlers[type(event)]):
            try:
                result = handler(event)
                if result is not None:
                    await result
            except Exception:  # a listener's bug must not undo a committed change
                log.exception("event handler %r failed for %r", handler, event)
