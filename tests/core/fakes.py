"""In-memory implementations of the core's ports (exobot/core/ports.py), for unit tests.

`FakeRepository.transaction()` hands out a unit of work over a deep copy of the stored state
and commits the copy only when the block exits without an exception, so a failing apply
leaves no trace. Ticket numbers (and entry/outbox ids) come from counters that live outside
the copied state, like a database sequence: they only ever increase and are never reused,
not even after a rollback.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clocks import FakeClock  # noqa: F401 - the core tests' clock, shared with the others

from exobot.core.model import AttachmentInfo, Entry, EntryKind, Ticket


class InjectedFailure(RuntimeError):
    """Raised by a fake unit of work method that a test asked to fail."""


@dataclass
class OutboxRow:
    id: int
    kind: str
    ticket: int | None
    payload: dict[str, Any]
    template: str | None
    recipient: str | None
    due: datetime | None = None  # set for rows queued with queue_later
    state: str = "pending"  # the fakes deliver nothing: a test sets "failed" to give one up


@dataclass
class MessageRow:
    message_id: str
    ticket: int
    direction: str
    entry_id: int | None


@dataclass
class InboundMark:
    state: str
    ticket: int | None
    error: str | None


@dataclass
class OriginalRow:
    entry_id: int
    ticket: int
    body: str | None
    subject: str | None
    kinds: tuple[str, ...]


@dataclass
class StoredState:
    """Everything the fake database holds; copied for each transaction."""

    tickets: dict[int, Ticket] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    attachments: list[tuple[int, int, AttachmentInfo]] = field(default_factory=list)
    participants: dict[int, dict[str, str]] = field(default_factory=dict)  # address -> source
    messages: list[MessageRow] = field(default_factory=list)
    outbox: list[OutboxRow] = field(default_factory=list)
    inbound: dict[int, InboundMark] = field(default_factory=dict)
    keys: dict[str, int | None] = field(default_factory=dict)  # key → ticket it acted on
    key_hashes: dict[str, str | None] = field(default_factory=dict)  # key → its request's hash
    originals: dict[int, OriginalRow] = field(default_factory=dict)  # by entry id


class _Sequence:
    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last += 1
        return self._last


class FakeUnitOfWork:
    """The UnitOfWork protocol over one (copied) StoredState."""

    def __init__(self, state: StoredState, repo: FakeRepository) -> None:
        self.state = state
        self._repo = repo

    def _maybe_fail(self, operation: str) -> None:
        if operation in self._repo.fail_on:
            raise InjectedFailure(f"injected failure in {operation}")

    async def get_ticket(self, number: int) -> Ticket | None:
        self._maybe_fail("get_ticket")
        ticket = self.state.tickets.get(number)
        return copy.deepcopy(ticket) if ticket else None  # like a fresh row from the database

    async def create_ticket(self, ticket: Ticket) -> Ticket:
        self._maybe_fail("create_ticket")
        ticket.number = self._repo.ticket_numbers.next()
        self.state.tickets[ticket.number] = copy.deepcopy(ticket)
        return ticket

    async def update_ticket(self, ticket: Ticket, *, title_changed: bool = True) -> None:
        self._maybe_fail("update_ticket")
        assert ticket.number in self.state.tickets, f"update of unknown ticket {ticket.number}"
        self.state.tickets[ticket.number] = copy.deepcopy(ticket)

    async def add_entry(self, entry: Entry) -> Entry:
        self._maybe_fail("add_entry")
        assert entry.ticket_number in self.state.tickets, "entry for an unknown ticket"
        entry.id = self._repo.entry_ids.next()
        self.state.entries.append(copy.deepcopy(entry))
        return entry

    async def add_attachments(
        self, ticket: int, entry_id: int, attachments: Sequence[AttachmentInfo]
    ) -> None:
        self._maybe_fail("add_attachments")
        self.state.attachments.extend((ticket, entry_id, a) for a in attachments)

    async def add_original(
        self,
        ticket: int,
        entry_id: int,
        body: str | None,
        subject: str | None,
        kinds: Sequence[str],
    ) -> None:
        self._maybe_fail("add_original")
        assert entry_id not in self.state.originals, f"second original for entry {entry_id}"
        self.state.originals[entry_id] = OriginalRow(
            entry_id, ticket, body, subject, tuple(sorted(set(kinds)))
        )

    async def original(self, ticket: int, entry_id: int) -> OriginalRow | None:
        row = self.state.originals.get(entry_id)
        return copy.deepcopy(row) if row is not None and row.ticket == ticket else None

    async def acks_since(self, address: str, since: datetime) -> int:
        # The fake keeps no times on outbox rows: every counted mail counts.
        return sum(
            1
            for row in self.state.outbox
            if row.recipient == address and row.template in ("ack", "too_big", "advice")
        )

    async def participants(self, ticket: int) -> set[str]:
        self._maybe_fail("participants")
        return set(self.state.participants.get(ticket, {}))

    async def add_participant(self, ticket: int, address: str, source: str) -> None:
        self._maybe_fail("add_participant")
        self.state.participants.setdefault(ticket, {}).setdefault(address, source)

    async def remove_participant(self, ticket: int, address: str) -> None:
        self._maybe_fail("remove_participant")
        self.state.participants.get(ticket, {}).pop(address, None)

    async def record_message(
        self, message_id: str, ticket: int, direction: str, entry_id: int | None
    ) -> None:
        self._maybe_fail("record_message")
        self.state.messages.append(MessageRow(message_id, ticket, direction, entry_id))

    async def ticket_message_ids(self, ticket: int) -> list[str]:
        self._maybe_fail("ticket_message_ids")
        return [m.message_id for m in self.state.messages if m.ticket == ticket]

    async def last_entry(self, ticket: int, kinds: Sequence[str]) -> Entry | None:
        self._maybe_fail("last_entry")
        wanted = {str(k) for k in kinds}
        for entry in reversed(self.state.entries):
            if entry.ticket_number == ticket and entry.kind.value in wanted:
                return copy.deepcopy(entry)
        return None

    async def entries_of(self, ticket: int, kinds: Sequence[str]) -> list[Entry]:
        self._maybe_fail("entries_of")
        wanted = {str(k) for k in kinds}
        return [
            copy.deepcopy(e)
            for e in self.state.entries
            if e.ticket_number == ticket and e.kind.value in wanted
        ]

    async def update_entry(self, entry: Entry) -> None:
        self._maybe_fail("update_entry")
        for stored in self.state.entries:
            if stored.id == entry.id:
                stored.kind = entry.kind
                stored.data = copy.deepcopy(entry.data)
                return
        raise AssertionError(f"update of unknown entry {entry.id}")

    async def queue_outbox(
        self,
        kind: str,
        ticket: int | None,
        payload: dict[str, Any],
        *,
        template: str | None = None,
        recipient: str | None = None,
    ) -> int:
        self._maybe_fail("queue_outbox")
        row = OutboxRow(
            self._repo.outbox_ids.next(), kind, ticket, copy.deepcopy(payload), template, recipient
        )
        self.state.outbox.append(row)
        return row.id

    async def queue_later(
        self, kind: str, ticket: int, payload: dict[str, Any], *, key: str, due: datetime
    ) -> int:
        """Like the database's: coalesced with the last row of that kind, ticket and key (the
        fakes deliver nothing, so every such row is still waiting)."""
        self._maybe_fail("queue_outbox")
        template = f"later:{key}"
        for row in reversed(self.state.outbox):
            if (row.kind, row.ticket, row.template) == (kind, ticket, template):
                row.due = max(row.due or due, due)
                row.payload = copy.deepcopy(payload)
                return row.id
        row = OutboxRow(
            self._repo.outbox_ids.next(), kind, ticket, copy.deepcopy(payload), template, None, due
        )
        self.state.outbox.append(row)
        return row.id

    async def give_up_reported(self, outbox_id: int) -> bool:
        for entry in reversed(self.state.entries):
            if (entry.data or {}).get("outbox_id") != outbox_id:
                continue
            if entry.kind is EntryKind.DELIVERY_RETRIED:
                return False
            if entry.kind is EntryKind.DELIVERY_FAILED and not entry.data.get("skipped"):
                return True
        return False

    async def retry_outbox(self, outbox_id: int) -> tuple[str, int | None, str | None] | None:
        self._maybe_fail("queue_outbox")
        for row in self.state.outbox:
            if row.id == outbox_id and row.state == "failed":
                row.state = "pending"
                return row.kind, row.ticket, row.template or row.payload.get("type")
        return None

    async def claim(self, key: str, request_hash: str | None = None) -> bool:
        self._maybe_fail("claim")
        if key in self.state.keys:
            return False
        self.state.keys[key] = None
        self.state.key_hashes[key] = request_hash
        return True

    async def settle(self, key: str, ticket: int | None) -> None:
        self.state.keys[key] = ticket

    async def handled_request(self, key: str) -> tuple[int | None, str | None] | None:
        if key not in self.state.keys:
            return None
        return self.state.keys[key], self.state.key_hashes.get(key)

    async def mark_inbound(
        self,
        inbound_id: int,
        state: str,
        *,
        ticket: int | None = None,
        error: str | None = None,
        **_details: object,
    ) -> None:
        self._maybe_fail("mark_inbound")
        self.state.inbound[inbound_id] = InboundMark(state, ticket, error)


class FakeRepository:
    """The Repository protocol in memory: one transaction at a time, all or nothing."""

    def __init__(self) -> None:
        self.state = StoredState()  # what has been committed
        self.ticket_numbers = _Sequence()
        self.entry_ids = _Sequence()
        self.outbox_ids = _Sequence()
        self.fail_on: set[str] = set()  # names of unit-of-work methods that should raise
        self.commits = 0
        self.rollbacks = 0
        self.stamps: list[datetime | None] = []  # the `now` each transaction was given
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self, now: datetime | None = None) -> AsyncIterator[FakeUnitOfWork]:
        self.stamps.append(now)
        async with self._lock:
            working = copy.deepcopy(self.state)
            try:
                yield FakeUnitOfWork(working, self)
            except BaseException:
                self.rollbacks += 1
                raise
            self.state = working
            self.commits += 1

    async def run(self, work, now: datetime | None = None):  # noqa: ANN001, ANN201 - the protocol
        """Run `work` in one transaction, as the SQL repository does in its writer thread."""
        async with self.transaction(now) as uow:
            return await work(uow)

    # --- read helpers for assertions (committed state only) ----------------------------------

    def ticket(self, number: int) -> Ticket:
        return self.state.tickets[number]

    def entries(self, number: int, kind: str | None = None) -> list[Entry]:
        return [
            e
            for e in self.state.entries
            if e.ticket_number == number and (kind is None or e.kind.value == kind)
        ]

    def kinds(self, number: int) -> list[str]:
        return [e.kind.value for e in self.entries(number)]

    def participants(self, number: int) -> set[str]:
        return set(self.state.participants.get(number, {}))

    def outbox(self, number: int | None = None) -> list[OutboxRow]:
        return [r for r in self.state.outbox if number is None or r.ticket == number]

    def message_ids(self, number: int) -> list[str]:
        return [m.message_id for m in self.state.messages if m.ticket == number]


class FakeMessageIds:
    """Mints `<exobot.N.k@example.org>`, k counting every mint."""

    def __init__(self, domain: str = "example.org") -> None:
        self.domain = domain
        self.minted: list[str] = []

    def mint(self, ticket: int) -> str:
        message_id = f"<exobot.{ticket}.{len(self.minted) + 1}@{self.domain}>"
        self.minted.append(message_id)
        return message_id
