"""What the core needs from the outside world, as protocols implemented elsewhere (db/, mail/)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

from exobot.core.clock import Clock
from exobot.core.model import AttachmentInfo, Entry, Ticket

__all__ = ["Clock", "MessageIdFactory", "Repository", "UnitOfWork"]

T = TypeVar("T")


class UnitOfWork(Protocol):
    """The operations of one database transaction; everything in it commits or nothing does."""

    async def get_ticket(self, number: int, *, aliases: bool = True) -> Ticket | None:
        """The ticket with that number, or None; a number merged into another ticket gives
        the surviving one unless `aliases` is False."""

    async def create_ticket(self, ticket: Ticket, *, number: int | None = None) -> Ticket:
        """Insert a ticket; its number is assigned here and never reused (or it is `number`,
        an imported ticket's own, and later numbers continue above it)."""

    async def alias_of(self, number: int) -> int | None:
        """The surviving ticket a merged number names, or None."""

    async def add_alias(self, number: int, ticket: int, source: str) -> None:
        """Make a merged number name `ticket` (idempotent)."""

    async def imported_ticket(self, source: str, external_id: str) -> int | None:
        """The ticket an import from `source` made of the other system's ticket."""

    async def imported_among(self, source: str, kind: str, external_ids: Sequence[str]) -> set[str]:
        """Those of the other system's ids (kind "ticket" or "entry") imported already."""

    async def import_collisions(self, source: str, numbers: Sequence[int]) -> list[int]:
        """Those numbers a ticket or merged number has here without being imported from
        `source`."""

    async def record_import(
        self, source: str, kind: str, external_id: str, ticket: int, entry_id: int | None = None
    ) -> None:
        """Note what an import wrote, by the other system's id."""

    async def record_message_once(
        self, message_id: str, ticket: int, direction: str, entry_id: int | None
    ) -> bool:
        """record_message, leaving a Message-ID already recorded as it is (False)."""

    async def update_ticket(self, ticket: Ticket, *, title_changed: bool = True) -> None:
        """Write back a changed ticket (`title_changed` says whether to re-index the title)."""

    async def add_entry(self, entry: Entry) -> Entry:
        """Append a history entry (and index its text for search)."""

    async def add_attachments(
        self, ticket: int, entry_id: int, attachments: Sequence[AttachmentInfo]
    ) -> None:
        """Store a mail's attachments."""

    async def add_original(
        self,
        ticket: int,
        entry_id: int,
        body: str | None,
        subject: str | None,
        kinds: Sequence[str],
    ) -> None:
        """Keep the original text of an entry stored masked (read only by the reveal action)."""

    async def original(self, ticket: int, entry_id: int) -> Any:
        """The original text kept for an entry (body, subject, kinds), or None."""

    async def acks_since(self, address: str, since: datetime) -> int:
        """How many mails counted against the daily acknowledgement cap went to `address`
        since `since`."""

    async def participants(self, ticket: int) -> set[str]:
        """The addresses that may write to the ticket."""

    async def add_participant(self, ticket: int, address: str, source: str) -> None:
        """Make an address a participant (idempotent)."""

    async def remove_participant(self, ticket: int, address: str) -> None:
        """Stop an address being a participant (idempotent)."""

    async def record_message(
        self, message_id: str, ticket: int, direction: str, entry_id: int | None
    ) -> None:
        """Remember a Message-ID of the ticket ("in" or "out") for threading and de-duplication."""

    async def ticket_message_ids(self, ticket: int) -> list[str]:
        """The ticket's Message-IDs, oldest first."""

    async def last_entry(self, ticket: int, kinds: Sequence[str]) -> Entry | None:
        """The newest history entry of one of these kinds."""

    async def entries_of(self, ticket: int, kinds: Sequence[str]) -> list[Entry]:
        """The ticket's history entries of these kinds, oldest first."""

    async def update_entry(self, entry: Entry) -> None:
        """Write back a changed entry (its kind and data)."""

    async def queue_outbox(
        self,
        kind: str,
        ticket: int | None,
        payload: dict[str, Any],
        *,
        template: str | None = None,
        recipient: str | None = None,
    ) -> int:
        """Queue an outward effect (a mail, a chat post) for the workers; returns its id."""

    async def queue_later(
        self, kind: str, ticket: int, payload: dict[str, Any], *, key: str, due: datetime
    ) -> int:
        """Queue an effect due at `due` that stands for every change until then: a pending
        row of the same kind, ticket and key that is not due yet is moved to `due` (never
        earlier) instead of adding another. Such a row waits for the ticket's earlier rows
        but never holds back its later ones. Returns the row's id."""

    async def give_up_reported(self, outbox_id: int) -> bool:
        """Whether the ticket of a given-up item already has its DELIVERY_FAILED entry (not a
        skipped Cc's), with no DELIVERY_RETRIED of the item after it."""

    async def retry_outbox(self, outbox_id: int) -> tuple[str, int | None, str | None] | None:
        """Make an item that was given up pending again, due now, its attempts counted anew;
        returns its (kind, ticket, what: a mail's template or a chat row's type), or None when
        no item with that id was given up."""

    async def claim(self, key: str, request_hash: str | None = None) -> bool:
        """Record an idempotency key (e.g. a chat event id), with the fingerprint of its
        request when known (Origin.request_hash); False when it was recorded before."""

    async def settle(self, key: str, ticket: int | None) -> None:
        """Note which ticket the request of a claimed key acted on."""

    async def handled_request(self, key: str) -> tuple[int | None, str | None] | None:
        """A handled key's (ticket it acted on, fingerprint of its request), either None when
        unknown; None when the key was never recorded."""

    async def mark_inbound(
        self,
        inbound_id: int,
        state: str,
        *,
        ticket: int | None = None,
        error: str | None = None,
        message_id: str | None = None,
        subject: str | None = None,
        sender: str | None = None,
    ) -> None:
        """Record what became of a received raw mail (and what it was, for operators)."""


class Repository(Protocol):
    """Storage of tickets, behind one transaction at a time."""

    def transaction(self, now: datetime | None = None) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work that commits on success and rolls back on error. `now` (the caller's
        clock) is the time it stamps on what it writes; None: the system's time."""

    async def run(
        self, work: Callable[[UnitOfWork], Awaitable[T]], now: datetime | None = None
    ) -> T:
        """Run `work` in one transaction (wherever the storage runs best) and return its result;
        commits when it returns, rolls back when it raises. `now` as for `transaction()`."""


class MessageIdFactory(Protocol):
    """Mints the Message-IDs of the mails we send, recognisable as ours later."""

    def mint(self, ticket: int) -> str:
        """A new, unique Message-ID for a mail about `ticket`."""
